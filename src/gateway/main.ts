// Placeholder until the gateway issue lands.
export async function run(args: string[]): Promise<number> {
  process.stderr.write("usage: not implemented yet: " + args.join(" ") + "\n");
  return 2;
}
