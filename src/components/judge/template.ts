// Judge prompt templates: the published ones ship as data files in prompts/ (each with its
// source); a user's own template is a text file. Placeholders are written {name}, as in the
// Python str.format templates they come from ({{ and }} are literal braces).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { inputError } from "../errors.js";
import { decodeText, readInputFile } from "../io/store.js";

const PLACEHOLDER = /\{\{|\}\}|\{(\w*)\}/g;

/** A template checked to use exactly these placeholders, each at least once. */
export interface Template {
  text: string;
  fields: readonly string[];
}

/** The published prompts of one source, read from prompts/<name>.json beside this module. */
export function packagedPrompts<S extends z.ZodType>(name: string, schema: S): z.infer<S> {
  const file = fileURLToPath(new URL(`prompts/${name}.json`, import.meta.url));
  return schema.parse(JSON.parse(readFileSync(file, "utf8")));
}

/**
 * Checks that `text` (from `where`: a file, or a packaged prompt's name) uses every field and no
 * other placeholder: a typo such as {respones} would otherwise send the judge a prompt without
 * the response in it.
 */
export function checkTemplate(text: string, fields: readonly string[], where: string): Template {
  const used = new Set<string>();
  for (const match of text.matchAll(PLACEHOLDER)) {
    const name = match[1];
    if (name === undefined) continue;
    if (!fields.includes(name)) {
      throw inputError(where, undefined, `unknown placeholder {${name}}; this judge fills ${list(fields)}`);
    }
    used.add(name);
  }
  const missing = fields.filter((f) => !used.has(f));
  if (missing.length > 0) {
    throw inputError(where, undefined, `template lacks ${list(missing)}; this judge fills ${list(fields)}`);
  }
  return { text, fields };
}

/** A user's template file, checked. */
export function readTemplate(file: string, fields: readonly string[]): Template {
  const bytes = readInputFile(file, "judge template file");
  return checkTemplate(decodeText(bytes, file, "utf8", "save the template as UTF-8"), fields, file);
}

/** Fills the template in one pass, so a value that itself contains {response} stays as it is. */
export function render(template: Template, values: Readonly<Record<string, string>>): string {
  return template.text.replace(PLACEHOLDER, (whole, name: string | undefined) =>
    name === undefined ? whole[0]! : values[name]!,
  );
}

const list = (fields: readonly string[]) => fields.map((f) => `{${f}}`).join(", ");
