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

  it('caps the passes min_steps adds at max_epochs, and every run at step_budget', () => {
    // 352 examples (22 steps an epoch): min_steps 400 would be 18.2 passes; max_epochs 8 allows 176.
    expect(sftSteps(22, { epochs: 3, min_steps: 400, max_steps: 0, max_epochs: 8 })).toBe(176);
    // 878 examples (55 an epoch): 8 passes are 440, so min_steps 400 stands.
    expect(sftSteps(55, { epochs: 3, min_steps: 400, max_steps: 0, max_epochs: 8 })).toBe(400);
    // 6,800 examples (425 an epoch): 3 epochs = 1,275 steps, capped at 600; Chorus's 411 is under it.
    expect(sftSteps(425, { epochs: 3, min_steps: 400, max_steps: 0, max_epochs: 8, step_budget: 600 })).toBe(600);
    expect(sftSteps(137, { epochs: 3, min_steps: 400, max_steps: 0, max_epochs: 8, step_budget: 600 })).toBe(411);
    // max_steps still wins.
    expect(sftSteps(425, { epochs: 3, min_steps: 400, max_steps: 50, step_budget: 600 })).toBe(50);
  });
});
