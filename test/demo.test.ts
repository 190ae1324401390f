// `npm run demo` is the project's main job: run it as a real process and check that every step
// it narrates succeeded (exit 0, the file arrived with the right SHA-256, the event was received).
import { expect, test } from "bun:test";
import { join } from "node:path";

test("npm run demo (scripts/demo.ts) completes every step", async () => {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "..", "scripts", "demo.ts")], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) console.log(out, err);
  expect(code).toBe(0);
  expect(out).toContain("trust established with node");
  expect(out).toMatch(/seq=0 bytes=\d+ time=/); // ping over the tunnel
  expect(out).toContain("hello from alice"); // inbox message
  expect(out).toContain("✓ bob received payload.bin, sha256");
  expect(out).toContain("[news] pilot-ts is up"); // pub/sub event
  expect(out).toMatch(/Sent:\s+4\.0 MB in \d+ms/); // bench
  expect(out).toContain("Demo finished in");
}, 120000);
