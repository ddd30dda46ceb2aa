import { describe, expect, it } from 'vitest';
import { gradeSkew } from '../../stages/cot/grade-balance.ts';

describe('gradeSkew', () => {
  it("names the grades that kept less than half the split's overall share", () => {
    // Chorus's train split under the rules teacher: 1,182 of 2,604 kept = 45 % overall. L2 (11 / 183 = 6 %)
    // and L4 (95 / 1,177 = 8 %) are below 22.7 % and each is at least 5 % of the split; L3 kept 0 %
    // but is 79 / 2,604 = 3 % of the split, too few to name.
    const skew = gradeSkew({ asked: { L1: 1165, L2: 183, L3: 79, L4: 1177 }, kept: { L1: 1076, L2: 11, L3: 0, L4: 95 } });
    expect(skew).toBe(
      'kept L1 1076 of 1165 (92%), L2 11 of 183 (6%), L3 0 of 79 (0%), L4 95 of 1177 (8%): L2, L4 kept less than half the overall 45%, so a model trained on this set will rarely answer L2 or L4',
    );
  });

  it('says nothing when every grade keeps at least half the overall share', () => {
    // 50 % overall; L4 keeps 30 %, above 25 %.
    expect(gradeSkew({ asked: { L1: 100, L2: 0, L3: 0, L4: 100 }, kept: { L1: 70, L2: 0, L3: 0, L4: 30 } })).toBeUndefined();
    expect(gradeSkew({ asked: { L1: 10, L2: 10, L3: 10, L4: 10 }, kept: { L1: 10, L2: 10, L3: 10, L4: 10 } })).toBeUndefined();
    expect(gradeSkew({ asked: { L1: 10, L2: 0, L3: 0, L4: 0 }, kept: { L1: 0, L2: 0, L3: 0, L4: 0 } })).toBeUndefined();
  });
});
