// A second rendezvous process for bench/registry.ts (two processes on one PostgreSQL database):
//   bun bench/lib/registry-server.ts <store-url>
// Prints {"port":N} once listening (register rate limit off, as in the in-process one), and
// stops on SIGTERM.
import { startRendezvous } from "../../src/server/main.ts";

const rv = await startRendezvous({ "registry-addr": "127.0.0.1:0", "beacon-addr": "127.0.0.1:0", store: process.argv[2], quiet: true, noRateLimit: true });
process.stdout.write(JSON.stringify({ port: rv.registryPort }) + "\n");
process.on("SIGTERM", () => void rv.stop().then(() => process.exit(0)));
