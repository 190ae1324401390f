// pilotctl's stdout/stderr writers.
//
// Touching `process.stdout` or `process.stderr` in Bun builds Node stream objects on first use,
// which costs more than the whole rest of a short command (measured with the compiled binary:
// ≈10 ms against ≈5 ms for a bare "hello" executable). `console.log` / `console.error` are native,
// synchronous (complete even into a slow pipe, and before process.exit) and print a single string
// argument verbatim, so every newline-terminated string goes through them. A string that does not
// end in a newline (progress dots, a bare response) switches that stream to the Node writer for the
// rest of the run; everything written before was already written synchronously, so order is kept.
let slowOut = false;
let slowErr = false;

export function writeOut(s: string): void {
  if (s === "") return;
  if (!slowOut && s.endsWith("\n")) return console.log(s.slice(0, -1));
  slowOut = true;
  process.stdout.write(s);
}

export function writeErr(s: string): void {
  if (s === "") return;
  if (!slowErr && s.endsWith("\n")) return console.error(s.slice(0, -1));
  slowErr = true;
  process.stderr.write(s);
}
