// Conversation files for `generate`: one record per conversation, {"id"?, "messages": [...]}.
import { z } from "zod";
import { inputError, recordError } from "../errors.js";
import { Messages } from "../domain.js";
import { readRecords, uniqueIds } from "./records.js";
import type { TextEncoding } from "../io/store.js";

export const ConversationRecord = z.strictObject({
  id: z.union([z.string().min(1), z.number().int()]).optional(),
  messages: Messages,
});

export interface Conversation {
  id: string;
  messages: Messages;
}

/** `replay`: every conversation must end with the assistant response to replay. */
export function readConversations(file: string, replay: boolean, encoding: TextEncoding): Conversation[] {
  const unique = uniqueIds(file);
  return readRecords(file, encoding).records.map(({ value, where }, i) => {
    const parsed = ConversationRecord.safeParse(value);
    if (!parsed.success) throw recordError(file, where, parsed.error);
    const id = String(parsed.data.id ?? i);
    unique(id, where, "field id");
    const last = parsed.data.messages.at(-1)!;
    if (replay && last.role !== "assistant") {
      throw inputError(
        file,
        `${where} field messages`,
        "must end with an assistant message (the response to replay or train on)",
      );
    }
    if (!replay && last.role === "assistant") {
      throw inputError(
        file,
        where,
        "field messages: ends with an assistant message; use --replay to record its routing",
      );
    }
    return { id, messages: parsed.data.messages };
  });
}
