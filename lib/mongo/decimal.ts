/**
 * Decimal text in the exact form PostgreSQL's numeric prints it: plain notation (no exponent), the scale kept
 * (`1.50` stays `1.50`, `1.5E+3` becomes `1500`, `0E-3` becomes `0.000`), no negative zero. The mapper writes this
 * form, so the value PostgreSQL stores prints back as the very same text and both sides of a checksum agree.
 * Returns null for text that is not a finite decimal number.
 */
export function plainDecimal(text: string): string | null {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text.trim());
  if (!m) return null;
  const [, sign, intPart = '', fracPart = '', expPart] = m;
  if (intPart.length === 0 && fracPart.length === 0) return null;
  const exp = expPart ? Number(expPart) : 0;
  if (!Number.isSafeInteger(exp) || Math.abs(exp) > 200_000) return null;
  let digits = intPart + fracPart;
  // The value is digits × 10^-(scale); scale below zero means trailing zeros of an integer.
  let scale = fracPart.length - exp;
  if (scale < 0) {
    digits += '0'.repeat(-scale);
    scale = 0;
  }
  digits = digits.padStart(scale + 1, '0');
  let whole = digits.slice(0, digits.length - scale).replace(/^0+(?=\d)/, '');
  const frac = digits.slice(digits.length - scale);
  if (whole === '') whole = '0';
  const isZero = /^0*$/.test(whole + frac);
  return `${sign === '-' && !isZero ? '-' : ''}${whole}${scale > 0 ? `.${frac}` : ''}`;
}

/** A double as decimal text (shortest text that reads back as the same double), in plainDecimal's form. */
export function doubleDecimal(v: number): string | null {
  if (!Number.isFinite(v)) return null;
  return plainDecimal(String(v));
}

/** The text PostgreSQL's float8 input reads back as exactly this double, negative zero and NaN included. */
export function doubleText(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  if (Object.is(v, -0)) return '-0';
  return String(v);
}

export const INT32_MIN = -2147483648n;
export const INT32_MAX = 2147483647n;
export const INT64_MIN = -9223372036854775808n;
export const INT64_MAX = 9223372036854775807n;
