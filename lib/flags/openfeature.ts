import {
  ErrorCode,
  StandardResolutionReasons,
  type EvaluationContext,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import { inRollout } from './hash.js';
import type { FlagClient } from './client.js';

/**
 * An OpenFeature server provider over the flags table, for teams that already call flags through the standard API:
 *
 *   await OpenFeature.setProviderAndWait(new ZeroDowntimeFlagProvider(flags(knex)));
 *   const readNew = await OpenFeature.getClient().getBooleanValue('users-full-name', false, { targetingKey: user.id });
 *
 * A boolean evaluation is the rollout for the context's targetingKey (the same bucket as FlagClient.isEnabled); a
 * number evaluation is the percentage itself. Strings and objects are not what these flags hold: TYPE_MISMATCH.
 */
export class ZeroDowntimeFlagProvider implements Provider {
  readonly metadata = { name: 'umzug-zero-downtime' } as const;
  readonly runsOn = 'server' as const;

  constructor(private readonly client: FlagClient) {}

  async resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext): Promise<ResolutionDetails<boolean>> {
    const pct = await this.client.percent(flagKey);
    if (pct === undefined) return notFound(flagKey, defaultValue);
    if (pct >= 100) return { value: true, variant: 'on', reason: StandardResolutionReasons.STATIC, flagMetadata: { percent: pct } };
    if (pct <= 0) return { value: false, variant: 'off', reason: StandardResolutionReasons.STATIC, flagMetadata: { percent: pct } };
    const key = context.targetingKey;
    if (key === undefined || key === '') {
      return {
        value: defaultValue,
        reason: StandardResolutionReasons.ERROR,
        errorCode: ErrorCode.TARGETING_KEY_MISSING,
        errorMessage: `flag "${flagKey}" is rolled out to ${pct} %: pass a targetingKey (user id, tenant…) to pick a side`,
      };
    }
    const on = inRollout(flagKey, key, pct);
    return { value: on, variant: on ? 'on' : 'off', reason: StandardResolutionReasons.SPLIT, flagMetadata: { percent: pct } };
  }

  async resolveNumberEvaluation(flagKey: string, defaultValue: number): Promise<ResolutionDetails<number>> {
    const pct = await this.client.percent(flagKey);
    if (pct === undefined) return notFound(flagKey, defaultValue);
    return { value: pct, reason: StandardResolutionReasons.STATIC };
  }

  async resolveStringEvaluation(flagKey: string, defaultValue: string): Promise<ResolutionDetails<string>> {
    return mismatch(flagKey, defaultValue, 'string');
  }

  async resolveObjectEvaluation<T extends JsonValue>(flagKey: string, defaultValue: T): Promise<ResolutionDetails<T>> {
    return mismatch(flagKey, defaultValue, 'object');
  }
}

function notFound<T>(flagKey: string, value: T): ResolutionDetails<T> {
  return {
    value,
    reason: StandardResolutionReasons.ERROR,
    errorCode: ErrorCode.FLAG_NOT_FOUND,
    errorMessage: `no flag "${flagKey}" is set (npx umzug flag set ${flagKey} PCT)`,
  };
}

function mismatch<T>(flagKey: string, value: T, type: string): ResolutionDetails<T> {
  return {
    value,
    reason: StandardResolutionReasons.ERROR,
    errorCode: ErrorCode.TYPE_MISMATCH,
    errorMessage: `flag "${flagKey}" is a percentage rollout: evaluate it as a boolean (or a number for the percentage), not as a ${type}`,
  };
}
