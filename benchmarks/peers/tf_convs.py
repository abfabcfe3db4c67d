"""tf_softmoe side of `benchmarks.conv_bench`: the Impala convolutions timed
one by one in TensorFlow graphs (the library's oneDNN kernels, NHWC).

Same request and answer as `benchmarks.peers.torch_convs`. A process of its
own, so that its inter-op pool can be one thread: the repeats of a call then
run one after the other, as in PyTorch, instead of two at a time.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import tensorflow as tf  # noqa: E402

from benchmarks.peers import conv_layers  # noqa: E402

_STRIDES = [1, 1, 1, 1]


def time_layer(batch, size, cin, cout, repeats, rounds):
    x = tf.random.normal([batch, size, size, cin])
    # Distinct operands per repeat, passed as arguments: grappler would fold
    # a convolution of captured constants away, and merge identical ones.
    grads = [tf.random.normal([batch, size, size, cout]) for _ in range(repeats)]
    filters = [tf.random.normal([3, 3, cin, cout]) for _ in range(repeats)]
    filter_shape = tf.constant([3, 3, cin, cout])
    input_shape = tf.constant([batch, size, size, cin])

    @tf.function(autograph=False)
    def forward(x, filters):
        return [tf.nn.conv2d(x, w, 1, "SAME") for w in filters]

    @tf.function(autograph=False)
    def filter_grad(x, grads):
        return [tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=filter_shape, out_backprop=g, strides=_STRIDES,
            padding="SAME") for g in grads]

    @tf.function(autograph=False)
    def input_grad(filters, grads):
        return [tf.raw_ops.Conv2DBackpropInput(
            input_sizes=input_shape, filter=w, out_backprop=g, strides=_STRIDES,
            padding="SAME") for w, g in zip(filters, grads)]

    return {
        "forward_ms": conv_layers.median_ms(lambda: forward(x, filters), repeats, rounds),
        "filter_grad_ms": conv_layers.median_ms(lambda: filter_grad(x, grads),
                                                repeats, rounds),
        "input_grad_ms": conv_layers.median_ms(lambda: input_grad(filters, grads),
                                               repeats, rounds)}


def main():
    request = json.loads(sys.stdin.readline())
    if request.get("threads"):
        tf.config.threading.set_intra_op_parallelism_threads(int(request["threads"]))
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rows = []
    for name, size, cin, cout, count in conv_layers.impala_layers():
        row = {"impl": "ours", "layer": name, "count": count}
        row.update(time_layer(request["batch"], size, cin, cout, request["repeats"],
                              request["rounds"]))
        rows.append(row)
    print(json.dumps({"tensorflow": tf.__version__,
                      "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                      "rows": rows}), flush=True)


if __name__ == "__main__":
    main()
