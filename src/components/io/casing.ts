// One decision, made here: JSON that Python writes or reads (the engine's replies, run files loaded
// with pandas) is snake_case; TypeScript is camelCase. A schema written once in camelCase gives
// both sides, so no snake_case type reaches the library's users and no hand-written copy of a
// field list can drift from another.
import { z } from "zod";

const snakeKey = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const camelKey = (key: string) => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** The snake_case form of a camelCase schema: object keys renamed, records' keys left alone. */
function wireOf(schema: z.ZodType): z.ZodType {
  if (schema instanceof z.ZodObject) {
    const shape = Object.entries(schema.shape as Record<string, z.ZodType>).map(([k, v]) => [
      snakeKey(k),
      wireOf(v),
    ]);
    return z.object(Object.fromEntries(shape));
  }
  if (schema instanceof z.ZodArray) return z.array(wireOf(schema.element as z.ZodType));
  return schema;
}

/** Rename the keys of `value`'s objects where `schema` has objects (not inside records). */
function rename(schema: z.ZodType, value: unknown, key: (k: string) => string): unknown {
  if (schema instanceof z.ZodObject && typeof value === "object" && value !== null) {
    const shape = schema.shape as Record<string, z.ZodType>;
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => {
        const camel = camelKey(k);
        return [key(k), shape[camel] ? rename(shape[camel], v, key) : v];
      }),
    );
  }
  if (schema instanceof z.ZodArray && Array.isArray(value)) {
    return value.map((v) => rename(schema.element as z.ZodType, v, key));
  }
  return value;
}

/**
 * A codec: parsing snake_case JSON gives the camelCase object `schema` describes; `z.encode`
 * gives back the snake_case JSON to write.
 */
export function snakeCase<S extends z.ZodObject>(schema: S) {
  return z.codec(wireOf(schema) as z.ZodType<Record<string, unknown>, Record<string, unknown>>, schema, {
    decode: (wire) => rename(schema, wire, camelKey) as z.input<S>,
    encode: (value) => rename(schema, value, snakeKey) as Record<string, unknown>,
  });
}
