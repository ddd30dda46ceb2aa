import { describe, expect, it } from 'vitest';
import { dominantRejection, type Rejection } from '../../stages/cot/rejections.ts';

const failed = (id: string, error: string): Rejection => ({ id, round: 'plain', reason: 'teacher_error', error });
const wrong = (id: string, reason: string): Rejection => ({ id, round: 'plain', reason, completion: '<answer>L1</answer>' });

describe('dominantRejection', () => {
  it('says when every request failed the same way, with the error', () => {
    const all = Array.from({ length: 180 }, (_, i) => failed(`q${i}`, 'HTTP 500'));
    expect(dominantRejection(all)).toBe('all 180 rejections: teacher_error (HTTP 500)');
  });

  it('names the most common cause and the runner-up, telling teacher errors apart by message', () => {
    // 3 wrong labels, 2 HTTP 500s, 1 HTTP 401: label leads with 3 of 6, then HTTP 500 with 2.
    const mixed = [wrong('a', 'label'), failed('b', 'HTTP 500'), wrong('c', 'label'), failed('d', 'HTTP 401'), failed('e', 'HTTP 500'), wrong('f', 'label')];
    expect(dominantRejection(mixed)).toBe('most common of 6 rejections: label (3), then teacher_error (HTTP 500) (2)');
  });

  it('says so when nothing was asked', () => {
    expect(dominantRejection([])).toBe('nothing was asked');
  });
});
