/**
 * torch.nn.GroupNorm over NHWC, as one op with its own gradient.
 *
 * tfjs has no group-norm op: composed from `moments` and broadcasting
 * arithmetic it is ~10 kernels forward and ~25 backward, most of them
 * broadcasting over 5-D views, for every norm of every ResnetBlock2D and
 * transformer block. A backend may register the two kernels below instead;
 * `groupNorm` uses them (through `tf.customGrad`) when the active backend has
 * both, and the composition otherwise. The conformance case `norm/group-norm`
 * holds either to float64, forward and gradients.
 *
 * Kernel contract (float32, x NHWC [B, H, W, C], C divisible by `groups`,
 * statistics per sample and group over H, W and the group's C / groups channels,
 * the biased variance as torch):
 * - `FUSED_GROUP_NORM` inputs `{ x, gamma, beta }` (gamma, beta [C]), attributes
 *   `{ groups, eps }`; outputs `[y, mean, rstd]` with mean and rstd = 1/√(var + eps) [B, groups].
 * - `FUSED_GROUP_NORM_GRAD` inputs `{ dy, x, gamma, mean, rstd }`, attribute
 *   `{ groups }`; outputs `[dx, dgamma, dbeta]`.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { NamedAttrMap } from "@tensorflow/tfjs-core";

export const FUSED_GROUP_NORM = "AptGroupNorm";
export const FUSED_GROUP_NORM_GRAD = "AptGroupNormGrad";

function hasFusedKernels(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(FUSED_GROUP_NORM, backend) !== undefined && tf.getKernel(FUSED_GROUP_NORM_GRAD, backend) !== undefined;
}

function composed(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, groups: number, eps: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    const g = tf.reshape(x, [b, h, w, groups, c / groups]);
    const { mean, variance } = tf.moments(g, [1, 2, 4], true);
    const normed = tf.reshape(tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, eps))), [b, h, w, c]);
    return tf.add(tf.mul(normed, gamma), beta);
  });
}

/** y = (x − mean) / √(var + eps) · gamma + beta, per sample and channel group (torch.nn.GroupNorm). */
export function groupNorm(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, groups: number, eps = 1e-5): tf.Tensor4D {
  const c = x.shape[3];
  if (c % groups !== 0) throw new Error(`groupNorm: ${c} channels are not divisible into ${groups} groups`);
  if (!hasFusedKernels()) return composed(x, gamma, beta, groups, eps);
  const attrs = { groups, eps } as unknown as NamedAttrMap;
  const fused = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, gammaIn, betaIn, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const [y, mean, rstd] = tf.engine().runKernel(FUSED_GROUP_NORM, { x: xIn, gamma: gammaIn, beta: betaIn }, attrs) as tf.Tensor[];
    save([xIn, gammaIn, mean!, rstd!]);
    return {
      value: y!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, gs, ms, rs] = saved;
        return tf.engine().runKernel(FUSED_GROUP_NORM_GRAD, { dy, x: xs!, gamma: gs!, mean: ms!, rstd: rs! }, { groups } as unknown as NamedAttrMap) as tf.Tensor[];
      },
    };
  });
  return fused(x, gamma, beta) as tf.Tensor4D;
}
