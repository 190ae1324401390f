// Child process for bench/raw.ts: one side of a raw loopback transfer, so sender and receiver
// each get their own event loop (like two daemons). Not a bench file itself (bench/lib/ is not
// scanned by the runner).
//
//   raw-peer.ts udp-sink  <bun|dgram>                 prints "PORT <n>", then one JSON line
// (sinks and sources also report their own total CPU time, cpuMs)
//   raw-peer.ts udp-source <bun|bunmany|dgram> <port> <seconds>
//   raw-peer.ts unix-sink <path>                      prints "READY", then one JSON line
//   raw-peer.ts unix-source <path> <bytes>
//   raw-peer.ts unix-echo <path>                      prints "READY", echoes until killed
//   raw-peer.ts udp-echo                              prints "PORT <n>", echoes until killed
//   raw-peer.ts idle                                  prints "READY", does nothing until killed
//
// A sink's JSON line is {bytes, datagrams, ms}: ms runs from the first to the last byte received.
// UDP sinks stop 400 ms after the last datagram; the Unix sink stops at the client's end.
import * as dgram from "node:dgram";
import * as net from "node:net";

const [mode, a1, a2, a3] = process.argv.slice(2);
const DGRAM = 4096;
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

function report(bytes: number, datagrams: number, first: number, last: number): never {
  console.log(JSON.stringify({ bytes, datagrams, ms: last - first, cpuMs: cpuMs() }));
  process.exit(0);
}

if (mode === "udp-sink") {
  let bytes = 0;
  let n = 0;
  let first = 0;
  let last = 0;
  const onData = (len: number) => {
    const now = performance.now();
    if (n === 0) first = now;
    last = now;
    bytes += len;
    n++;
  };
  setInterval(() => {
    if (n > 0 && performance.now() - last > 400) report(bytes, n, first, last);
  }, 100);
  if (a1 === "dgram") {
    const s = dgram.createSocket("udp4");
    s.on("message", (m) => onData(m.length));
    s.bind(0, "127.0.0.1", () => console.log(`PORT ${s.address().port}`));
  } else {
    const s = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, binaryType: "uint8array", socket: { data: (_s, b) => onData(b.length) } });
    console.log(`PORT ${s.port}`);
  }
} else if (mode === "udp-source") {
  const port = Number(a2);
  const until = performance.now() + Number(a3) * 1000;
  const payload = new Uint8Array(DGRAM).fill(0x5a);
  let sent = 0;
  if (a1 === "dgram") {
    const s = dgram.createSocket("udp4");
    s.connect(port, "127.0.0.1", () => {
      // node:dgram's send is asynchronous; keep a bounded number in flight.
      let inflight = 0;
      const pump = () => {
        while (inflight < 256 && performance.now() < until) {
          inflight++;
          s.send(payload, () => {
            inflight--;
            sent++;
            if (inflight < 128) pump();
          });
        }
        if (performance.now() >= until && inflight === 0) {
          console.log(JSON.stringify({ sent, cpuMs: cpuMs() }));
          s.close();
        }
      };
      pump();
    });
  } else {
    const many = a1 === "bunmany";
    let blocked = false;
    const s = await Bun.udpSocket({
      binaryType: "uint8array",
      socket: { drain: () => { blocked = false; pump(); } },
    });
    const batch: (Uint8Array | number | string)[] = [];
    for (let i = 0; i < 32; i++) batch.push(payload, port, "127.0.0.1");
    const pump = () => {
      while (!blocked) {
        if (performance.now() >= until) {
          console.log(JSON.stringify({ sent, cpuMs: cpuMs() }));
          s.close();
          process.exit(0);
        }
        for (let k = 0; k < 64 && !blocked; k++) {
          if (many) {
            const c = s.sendMany(batch);
            sent += c;
            if (c < 32) blocked = true;
          } else if (s.send(payload, port, "127.0.0.1")) sent++;
          else blocked = true;
        }
        if (!blocked) {
          // yield to the event loop now and then (like a daemon would)
          setImmediate(pump);
          return;
        }
      }
    };
    pump();
  }
} else if (mode === "unix-sink") {
  let bytes = 0;
  let first = 0;
  const srv = net.createServer((c) => {
    c.on("data", (b: Buffer) => {
      if (bytes === 0) first = performance.now();
      bytes += b.length;
    });
    c.on("end", () => report(bytes, 0, first, performance.now()));
  });
  srv.listen(a1, () => console.log("READY"));
} else if (mode === "unix-source") {
  const total = Number(a2);
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const c = net.connect({ path: a1 }, () => {
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!c.write(chunk)) return void c.once("drain", pump);
      }
      c.end();
    };
    pump();
  });
} else if (mode === "unix-echo") {
  net.createServer((c) => c.on("data", (b: Buffer) => c.write(b))).listen(a1, () => console.log("READY"));
} else if (mode === "udp-echo") {
  const s = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data: (sock, b, port, addr) => void sock.send(b, port, addr) } });
  console.log(`PORT ${s.port}`);
} else if (mode === "idle") {
  setInterval(() => {}, 1000);
  console.log("READY");
} else {
  console.error(`raw-peer: unknown mode ${mode}`);
  process.exit(2);
}
