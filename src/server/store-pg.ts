// Placeholder replaced below.
export const PgStore = { async open(_url: string): Promise<never> { throw new Error("postgres store not implemented yet"); } };
