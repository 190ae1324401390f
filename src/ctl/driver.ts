// The IPC driver moved to the SDK (src/client/driver.ts); this path stays for existing importers.
export * from "../client/driver.ts";
