/**
 * Loads a migration or config file by URL. A plain `import()` would do, but tsc turns it into require() in the
 * CommonJS build, and require() can load neither a file URL nor an ES module; a function built at run time keeps
 * the real dynamic import in both builds.
 */
export const importModule = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Record<string, unknown>>;
