import { startThrowawayCluster } from './throwaway-cluster.js';

/**
 * A PostgreSQL server of the test's own with pg_stat_statements preloaded (the shared server has it neither loaded
 * nor may a test change its shared_preload_libraries). `pg_stat_statements.track = top`, the default.
 */
export interface StatementsServer {
  readonly url: string;
  stop(): Promise<void>;
}

export async function startStatementsServer(): Promise<StatementsServer> {
  const cluster = await startThrowawayCluster({
    prefix: 'zdt-pgss',
    conf: [`shared_preload_libraries = 'pg_stat_statements'`, 'pg_stat_statements.track = top'],
  });
  // mocha exits without running `after` hooks that time out: never leave a server running behind.
  const onExit = () => cluster.remove();
  process.once('exit', onExit);
  return {
    url: cluster.url,
    stop: async () => {
      process.off('exit', onExit);
      cluster.remove();
    },
  };
}
