// Independent CRC-32 oracle for tests: node:zlib's crc32 (zlib's own implementation).
import * as zlib from "node:zlib";
const z = (zlib as unknown as { crc32: (b: Uint8Array, v?: number) => number }).crc32;
export function zlibSync(b: Uint8Array): number {
  return z(b) >>> 0;
}
