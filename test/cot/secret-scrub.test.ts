import { describe, expect, it } from 'vitest';
import { secretScrubber } from '../../stages/cot/secret-scrub.ts';

const KEY = 'sk-proj-Zx81+q/Ab==Kd93LmN7';
const scrub = secretScrubber(KEY);

describe('the API-key scrub', () => {
  it('masks the key as written, and leaves text without it untouched', () => {
    expect(scrub(`auth failed for ${KEY}.`)).toBe('auth failed for ***.');
    expect(scrub('nothing secret here, only sk-proj words')).toBe('nothing secret here, only sk-proj words');
  });

  it('masks URL-encoded, hex and base64 echoes, also inside a longer base64 string (HTTP Basic)', () => {
    expect(encodeURIComponent(KEY)).not.toBe(KEY); // "+", "/" and "=" are encoded
    expect(scrub(`GET /v1?key=${encodeURIComponent(KEY)}&x=1`)).toBe('GET /v1?key=***&x=1');
    expect(scrub(`token ${Buffer.from(KEY).toString('base64')} end`)).toBe('token *** end');
    expect(scrub(`token ${Buffer.from(KEY).toString('base64url')} end`)).toBe('token *** end');
    expect(scrub(`hex ${Buffer.from(KEY).toString('hex')}`)).toBe('hex ***');
    // "user:" shifts the key by 5 bytes, so its base64 differs from the key's own; at most the
    // characters shared with the prefix's bits may remain, never a run of the key's own.
    const basic = Buffer.from(`user:${KEY}`).toString('base64');
    const masked = scrub(`Authorization: Basic ${basic}`);
    expect(masked).toContain('***');
    expect(masked.length).toBeLessThan(`Authorization: Basic ${basic}`.length - 20);
  });

  it('masks a key split in pieces of 8 characters or more, wherever they are', () => {
    const [head, tail] = [KEY.slice(0, 12), KEY.slice(12)];
    expect(scrub(`first ${head} then ${tail}`)).toBe('first *** then ***');
    // A 7-character fragment is let through: too short to be the key's.
    expect(scrub(`prefix ${KEY.slice(0, 7)}`)).toBe(`prefix ${KEY.slice(0, 7)}`);
  });
});
