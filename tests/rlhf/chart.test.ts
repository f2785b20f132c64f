import { describe, expect, it } from 'vitest';
import { renderPanels } from '../../src/training/rlhf/chart.ts';

describe('RLHF curves', () => {
  it('draws a grid of panels, negative values and empty series included, as a PNG', () => {
    const png = renderPanels('RLHF PPO V1', [
      { title: 'REWARD', line: [-1, -0.5, 0.2, 0.8].map((value, i) => ({ step: i + 1, value })) },
      { title: 'KL', line: [{ step: 1, value: 0 }], dots: [{ step: 0, value: 0 }, { step: 4, value: 2.5 }], ref: { value: 10, label: 'BOUND' } },
      { title: 'ENTROPY', line: [] },
      { title: 'QA', dots: [{ step: 0, value: NaN }] },
      { title: 'LOSS' },
    ]);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    // IHDR: 2 columns × 420 wide, 3 rows × 220 high + the 30-pixel title.
    expect(png.readUInt32BE(16)).toBe(840);
    expect(png.readUInt32BE(20)).toBe(3 * 220 + 30);
  });
});
