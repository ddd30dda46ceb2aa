/** How many optimizer steps sft takes: epochs, raised to min_steps on small sets, max_steps over both. */
import { describe, expect, it } from 'vitest';
import { sftSteps } from '../../stages/sft/index.ts';

describe('sft steps', () => {
  it('takes the epochs\' steps, at least min_steps, and exactly max_steps when set', () => {
    // 878 examples in batches of 16: ceil(878 / 16) = 55 steps an epoch; 3 epochs = 165.
    expect(sftSteps(55, { epochs: 3, min_steps: 0, max_steps: 0 })).toBe(165);
    expect(sftSteps(55, { epochs: 3, min_steps: 400, max_steps: 0 })).toBe(400);
    // 2,183 examples: 137 an epoch, 3 epochs = 411, already past min_steps 400.
    expect(sftSteps(137, { epochs: 3, min_steps: 400, max_steps: 0 })).toBe(411);
    expect(sftSteps(137, { epochs: 3, min_steps: 400, max_steps: 50 })).toBe(50);
    // 2.5 epochs of 3 steps = 7.5, rounded to 8; a fraction of one step still trains one.
    expect(sftSteps(3, { epochs: 2.5, min_steps: 0, max_steps: 0 })).toBe(8);
    expect(sftSteps(1, { epochs: 0.1, min_steps: 0, max_steps: 0 })).toBe(1);
  });
});
