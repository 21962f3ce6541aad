// Kept apart from driver.ts, which imports the driver's types: the config's type must not make a project without the
// optional `mongodb` package fail to type-check (TS2307 from the package's root types).

/** Where the move's collection lives, from the `mongo` config. */
export interface MongoConnectionConfig {
  readonly url: string;
  /** Default database for collections named without one; default: the database in the URL. */
  readonly database?: string;
  /** Extra MongoClient options (useBigInt64 is always on: Int64 values must not be rounded). */
  readonly clientOptions?: Readonly<Record<string, unknown>>;
}
