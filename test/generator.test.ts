// inOrder: the one place that decides what runs at once and in which order results are written.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { inOrder } from "../src/components/engine/generator.js";

// Later items finish first: without ordering, commits would come out reversed.
const delays = [40, 30, 20, 10, 5, 1];

test("inOrder commits in item order however the items finish, with at most `slots` running", async () => {
  let running = 0;
  let most = 0;
  const committed: number[] = [];
  const count = await inOrder(
    delays.map((_, i) => i),
    3,
    async (i) => {
      most = Math.max(most, ++running);
      await sleep(delays[i]!);
      running--;
      return i * 10;
    },
    (i, result) => void committed.push(i, result),
  );
  assert.equal(count, 6);
  assert.deepEqual(committed, [0, 0, 1, 10, 2, 20, 3, 30, 4, 40, 5, 50]);
  assert.equal(most, 3);
});

test("inOrder starts nothing after an abort and commits what was running", async () => {
  const controller = new AbortController();
  const startedItems: number[] = [];
  const count = await inOrder(
    delays.map((_, i) => i),
    2,
    async (i) => {
      startedItems.push(i);
      await sleep(5);
      return i;
    },
    (i) => {
      if (i === 1) controller.abort();
    },
    controller.signal,
  );
  assert.deepEqual(startedItems, [0, 1, 2, 3]);
  assert.equal(count, 4);
});

test("inOrder commits the items before a failure, waits for the running ones, then throws", async () => {
  const committed: number[] = [];
  let finished = 0;
  await assert.rejects(
    inOrder(
      delays.map((_, i) => i),
      3,
      async (i) => {
        await sleep(delays[i]!);
        finished++;
        if (i === 2) throw new Error("engine died on item 2");
        return i;
      },
      (i) => void committed.push(i),
    ),
    /item 2/,
  );
  assert.deepEqual(committed, [0, 1]);
  // Nothing keeps running behind the caller's back once the error is thrown.
  const settled = finished;
  await sleep(60);
  assert.equal(finished, settled);
});
