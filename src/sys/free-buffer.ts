// Give a buffer's memory back to the allocator now instead of at the collector's next pass:
// `ArrayBuffer.prototype.transfer(0)` detaches it and releases its contents, and the next
// allocation of that size reuses them. For buffers that come and go by the megabyte (socket
// reads, paused-reader blocks, Recv frames), whose garbage set the daemon's peak memory
// (docs/performance.md, "Sixth round"). Every view of `b` reads as empty afterwards.
export function freeBuffer(b: ArrayBufferLike): void {
  (b as ArrayBuffer & { transfer?: (n: number) => ArrayBuffer }).transfer?.(0);
}
