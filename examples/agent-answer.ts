#!/usr/bin/env bun
// An agent that listens on a Pilot port and answers every question it receives, written with the
// SDK. Each inbound connection carries one question; the agent writes one answer back.
//
// Usage: bun examples/agent-answer.ts [port]        (default 1000; daemon socket from $PILOT_SOCKET)
// Then, from another node that trusts this one:
//   pilotctl send <this-node-address> 1000 --data "what time is it?"
import { connect, type Connection, type Pilot } from "pilot-ts";

export type Answer = (question: string, from: string) => string | Promise<string>;

/** Serve questions on `port` until `signal` aborts. Resolves with the number of answers given. */
export async function serveAnswers(pilot: Pilot, port: number, answer: Answer, signal?: AbortSignal): Promise<number> {
  const listener = await pilot.listen(port, { signal });
  let answered = 0;
  for await (const conn of listener) {
    // Each question is handled on its own so a slow asker does not hold up the others.
    void handle(conn, answer).then((ok) => { if (ok) answered++; });
  }
  return answered;
}

async function handle(conn: Connection, answer: Answer): Promise<boolean> {
  try {
    const reader = conn.readable.getReader(); // the connection as a Web ReadableStream
    const { value } = await reader.read();
    reader.releaseLock();
    if (!value) return false;
    const question = new TextDecoder().decode(value);
    await conn.write(await answer(question, conn.remote));
    // Let the asker close first: a Pilot stream has no half-close, so closing right away could
    // race the answer still in flight.
    await conn.read({ timeoutMs: 10_000 }).catch(() => null);
    return true;
  } finally {
    conn.close();
  }
}

/** Ask a question on `port` of `target` and return the answer. */
export async function ask(pilot: Pilot, target: string | number, port: number, question: string, timeoutMs = 10_000): Promise<string> {
  const conn = await pilot.dial(target, port, { timeoutMs });
  try {
    await conn.write(question);
    const reply = await conn.read({ timeoutMs });
    return reply ? new TextDecoder().decode(reply) : "";
  } finally {
    conn.close();
  }
}

if (import.meta.main) {
  const port = Number(process.argv[2] ?? 1000);
  const pilot = await connect();
  const me = await pilot.info();
  console.log(`answering on ${me.address}:${port} (Ctrl-C to stop)`);
  const stop = new AbortController();
  process.on("SIGINT", () => stop.abort());
  const n = await serveAnswers(pilot, port, (q, from) => `${from} asked ${JSON.stringify(q)}; the time here is ${new Date().toISOString()}`, stop.signal);
  console.log(`answered ${n} questions`);
  pilot.close();
}
