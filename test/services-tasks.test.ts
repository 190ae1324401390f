import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { MemNet } from "./helpers/memconn.ts";
import { DataExchangeClient } from "../src/daemon/services/dataexchange.ts";
import { encodeTaskFile, newTaskId, poloReward, startTasks, TASK_ID_RE, TASK_SEND_RESULTS, TASK_SUBMIT } from "../src/daemon/services/tasks.ts";
import { atomicWriteFile } from "../src/daemon/services/util.ts";
import { FakeRegistry, makeNode, rmDir, until } from "./helpers/services-ctx.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(rmDir));
const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

describe("task submit (docs/protocol.md §10.5)", () => {
  test("task file format and helpers", () => {
    expect(newTaskId()).toMatch(TASK_ID_RE);
    expect(encodeTaskFile({ task_id: "i", task_description: "d", created_at: "2025-01-01T12:00:00Z", status: "NEW", status_justification: "j", from: "f", to: "t", time_cpu_ms: 5 }))
      .toBe('{\n  "task_id": "i",\n  "task_description": "d",\n  "created_at": "2025-01-01T12:00:00Z",\n  "status": "NEW",\n  "status_justification": "j",\n  "from": "f",\n  "to": "t",\n  "time_cpu_ms": 5\n}');
    expect(poloReward(0, 0, 0)).toBe(1);
    expect(poloReward(60000, 0, 0)).toBe(2);
    expect(poloReward(7 * 60000, 0, 0)).toBe(4);
  });

  test("submit accepted/rejected by polo, traversal refused, results saved, NEW expires", async () => {
    let clock = Date.now();
    const net = new MemNet();
    const reg = new FakeRegistry();
    const srv = makeNode(net, reg, 7, { now: () => clock });
    const cli = makeNode(net, reg, 4, { now: () => clock });
    dirs.push(srv.dir, cli.dir);
    const scores = new Map<number, number>([[4, 5], [7, 3]]);
    const polo = { get: async (n: number) => scores.get(n) ?? 0, update: async (n: number, d: number) => void scores.set(n, (scores.get(n) ?? 0) + d) };
    (srv.ctx as { polo?: unknown }).polo = polo;
    (cli.ctx as { polo?: unknown }).polo = polo;
    const tasks = startTasks(srv.ctx);
    const ctasks = startTasks(cli.ctx);

    const submit = async (id: string) => {
      const c = new DataExchangeClient(await cli.ctx.dial(srv.addr, 1003));
      const r = await c.request(TASK_SUBMIT, enc({ task_id: id, task_description: "Summarize", from_addr: "0:0000.0000.0099", to_addr: "0:0000.0000.0007" }));
      return JSON.parse(r);
    };
    const id = newTaskId();
    const r = await submit(id);
    expect(r).toEqual({ task_id: id, status: 200, message: "Task received with status NEW" });
    const t = JSON.parse(readFileSync(join(srv.dir, "tasks", "received", `${id}.json`), "utf8"));
    expect(t).toMatchObject({ task_id: id, status: "NEW", status_justification: "A new task was created", from: "0:0000.0000.0004", to: "0:0000.0000.0007" });
    expect(tasks.queue()).toEqual([id]);

    expect(await submit("../../evil")).toMatchObject({ status: 400 });
    expect(existsSync(join(srv.dir, "evil.json"))).toBe(false);
    scores.set(4, 1);
    expect(await submit(newTaskId())).toEqual(expect.objectContaining({ status: 400, message: "Polo score too low: submitter=1, receiver=3" }));

    // results for a task the client submitted to node 7; traversal in filename is neutralised
    atomicWriteFile(join(cli.dir, "tasks", "submitted", `${id}.json`), encodeTaskFile({ ...t, from: "0:0000.0000.0004", to: "0:0000.0000.0007" }));
    const c2 = await srv.ctx.dial(cli.addr, 1003);
    const d = new DataExchangeClient(c2);
    await d.send(TASK_SEND_RESULTS, enc({ task_id: id, result_type: "file", filename: "../../../x.csv", file_data: Buffer.from("a,b").toString("base64"), completed_at: "2025-01-01T12:00:00Z", time_cpu_ms: 60000 }));
    await until(() => existsSync(join(cli.dir, "tasks", "results", `${id}_x.csv`)));
    expect(readFileSync(join(cli.dir, "tasks", "results", `${id}_x.csv`), "utf8")).toBe("a,b");
    await until(() => JSON.parse(readFileSync(join(cli.dir, "tasks", "submitted", `${id}.json`), "utf8")).status === "COMPLETED");
    await until(() => scores.get(7) === 3 + 2);
    expect(readdirSync(join(cli.dir, "tasks", "results")).length).toBe(1);

    // NEW task older than a minute becomes CANCELLED
    clock += 61_000;
    await tasks.sweep();
    expect(JSON.parse(readFileSync(join(srv.dir, "tasks", "received", `${id}.json`), "utf8")).status).toBe("CANCELLED");
    expect(tasks.queue()).toEqual([]);
    tasks.stop(); ctasks.stop();
  });
});
