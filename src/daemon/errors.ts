// Errors of the daemon core, and the mapping of registry failures to the texts IPC clients see.
import { RegistryError } from "./registry-client.ts";

export class DaemonError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Run a registry call; a refusal becomes Error("registry: <error>") and a transport failure
 * Error("send: <error>"), the texts the reference's IPC replies carry.
 */
export async function regCall<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof RegistryError && e.response) throw new Error(`registry: ${e.message}`);
    throw new Error(`send: ${(e as Error).message}`);
  }
}

/** A registry that answered but refused the request (as opposed to one that could not be reached). */
export function isRefusal(e: unknown): boolean {
  return e instanceof RegistryError && !!e.response;
}

