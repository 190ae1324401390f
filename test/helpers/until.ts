// Poll `fn` until it returns a truthy value (which is returned), or fail after `ms` with the
// condition's name and the last error `fn` threw. For end-to-end tests that wait on real processes.
export async function until<T>(fn: () => Promise<T | null | undefined | false>, what: string, ms = 15000, pollMs = 100): Promise<T> {
  const end = Date.now() + ms;
  let last = "";
  for (;;) {
    const v = await fn().catch((e) => {
      last = (e as Error)?.message ?? String(e);
      return null;
    });
    if (v) return v as T;
    if (Date.now() > end) throw new Error(`timed out: ${what}${last ? ` (last error: ${last})` : ""}`);
    await Bun.sleep(pollMs);
  }
}
