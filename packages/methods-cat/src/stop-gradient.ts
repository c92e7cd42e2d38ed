import * as tf from "@tensorflow/tfjs-core";

type Identity = (x: tf.Tensor) => tf.Tensor;
let op: Identity | undefined;

/**
 * The identity in the forward pass with a zero gradient (torch's `.detach()`,
 * tensorflow's `stop_gradient`): the value is used, nothing flows back into it.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  op ??= tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    return { value: tf.clone(input), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
  }) as Identity;
  return op(x) as T;
}
