/**
 * Two LoRA adapters in a row as one: an adapter trained on a base with a first adapter merged
 * (DPO after SFT) is, together with that first one, exactly one LoRA of rank r1 + r2 on the
 * original base:
 *
 *     s1·B1·A1 + s2·B2·A2 = s·[s1/s·B1, s2/s·B2]·[A1; A2],     s = alpha / (r1 + r2)
 *
 * (A stacked on rows, B concatenated on columns). A projection or layer one of them does not touch
 * gets zero blocks there, since PEFT's configuration puts every target on every listed layer with
 * one rank. The result's scale is the second adapter's, so its B block is copied as it is.
 *
 * Plain arrays (PEFT's folder as peft.ts reads it): no tensor backend.
 */
import type { NamedArray } from '../safetensors.ts';
import { LLAMA_LORA_TARGETS, LLAMA_TARGET_SITE, resolveLoraConfig, type LoraTarget } from './config.ts';
import type { PeftLora } from './peft.ts';

const SITE_TARGET = new Map(LLAMA_LORA_TARGETS.map((t) => [LLAMA_TARGET_SITE[t] as string, t]));

/** `model.layers.N.<site>` of each lora_A name, with its layer and target. */
function sites(lora: PeftLora): Map<string, { layer: number; target: LoraTarget }> {
  const out = new Map<string, { layer: number; target: LoraTarget }>();
  for (const name of lora.tensors.keys()) {
    if (!name.endsWith('.lora_A')) continue;
    const site = name.slice(0, -'.lora_A'.length);
    const [, , layer, ...rest] = site.split('.');
    out.set(site, { layer: Number(layer), target: SITE_TARGET.get(rest.join('.'))! });
  }
  return out;
}

/** [in, out] of each target's projection, read from whichever adapter has that target on some layer (every layer's projection has one shape). */
function projectionShapes(loras: PeftLora[]): Map<LoraTarget, [number, number]> {
  const out = new Map<LoraTarget, [number, number]>();
  for (const lora of loras) {
    for (const [site, { target }] of sites(lora)) {
      if (out.has(target)) continue;
      const a = lora.tensors.get(`${site}.lora_A`)!;
      const b = lora.tensors.get(`${site}.lora_B`)!;
      out.set(target, [a.shape[1]!, b.shape[0]!]);
    }
  }
  return out;
}

/**
 * `first` then `second` (trained on the base with `first` merged) as one adapter on the base
 * `first` goes on: rank r1 + r2, alpha = s2·(r1 + r2), the targets and layers of both. The
 * identity of the base is `first`'s; the meta is `second`'s.
 */
export function combineLoras(first: PeftLora, second: PeftLora): PeftLora {
  const r1 = first.config.rank;
  const r2 = second.config.rank;
  const r = r1 + r2;
  const s1 = first.config.alpha / r1;
  const s2 = second.config.alpha / r2;
  const shapes = projectionShapes([first, second]);
  const bySite = [sites(first), sites(second)];
  const targets = LLAMA_LORA_TARGETS.filter((t) => shapes.has(t));
  const layers = [...new Set(bySite.flatMap((m) => [...m.values()].map((x) => x.layer)))].sort((a, b) => a - b);
  const tensors = new Map<string, NamedArray>();
  for (const layer of layers) {
    for (const target of targets) {
      const site = `model.layers.${layer}.${LLAMA_TARGET_SITE[target]}`;
      const [inp, out] = shapes.get(target)!;
      const a = new Float32Array(r * inp);
      const b = new Float32Array(out * r);
      const parts: [PeftLora, number, number, number][] = [
        [first, 0, r1, s1 / s2],
        [second, r1, r2, 1],
      ];
      for (const [lora, offset, rank, factor] of parts) {
        const la = lora.tensors.get(`${site}.lora_A`);
        const lb = lora.tensors.get(`${site}.lora_B`);
        if (!la || !lb) continue; // not touched by this one: its blocks stay zero
        a.set(la.data as Float32Array, offset * inp);
        for (let o = 0; o < out; o++) {
          for (let k = 0; k < rank; k++) b[o * r + offset + k] = factor === 1 ? lb.data[o * rank + k]! : factor * lb.data[o * rank + k]!;
        }
      }
      tensors.set(`${site}.lora_A`, { dtype: 'F32', shape: [r, inp], data: a });
      tensors.set(`${site}.lora_B`, { dtype: 'F32', shape: [out, r], data: b });
    }
  }
  const subset = first.config.layers !== undefined && second.config.layers !== undefined;
  const config = resolveLoraConfig(
    {
      rank: r,
      alpha: s2 * r,
      dropout: second.config.dropout,
      targets,
      // A layer subset only when both adapters had one (layers_to_transform); otherwise every layer carries it.
      ...(subset ? { layers } : {}),
    },
    'llama',
  );
  return {
    config,
    tensors,
    baseModel: first.baseModel,
    ...(first.base ? { base: first.base } : {}),
    meta: { ...second.meta, combined: { first: { rank: r1, alpha: first.config.alpha, targets: first.config.targets }, second: { rank: r2, alpha: second.config.alpha, targets: second.config.targets } } },
  };
}
