"""PyTorch side of `benchmarks.conv_bench`: the Impala convolutions timed one
by one (forward, filter gradient, input gradient), NCHW and channels-last.

Reads one JSON request on stdin ({"batch", "repeats", "rounds", "threads",
"layouts"}) and prints one JSON line of rows; run inside the torch venv.
"""

import json
import sys

import torch

from benchmarks.peers import conv_layers


def time_layer(batch, size, cin, cout, layout, repeats, rounds):
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(batch, cin, size, size).to(memory_format=fmt)
    grad = torch.randn(batch, cout, size, size).to(memory_format=fmt)
    # Distinct filters, so nothing is reused between the repeats.
    filters = [torch.randn(cout, cin, 3, 3).to(memory_format=fmt) for _ in range(repeats)]
    backward = torch.ops.aten.convolution_backward

    def gradient(mask):
        def run():
            for w in filters:
                backward(grad, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)
        return run

    def forward():
        with torch.no_grad():
            for w in filters:
                torch.nn.functional.conv2d(x, w, padding=1)

    return {"forward_ms": conv_layers.median_ms(forward, repeats, rounds),
            "filter_grad_ms": conv_layers.median_ms(gradient([False, True, False]),
                                                    repeats, rounds),
            "input_grad_ms": conv_layers.median_ms(gradient([True, False, False]),
                                                   repeats, rounds)}


def main():
    request = json.loads(sys.stdin.readline())
    if request.get("threads"):
        torch.set_num_threads(int(request["threads"]))
    rows = []
    for layout in request["layouts"]:
        for name, size, cin, cout, count in conv_layers.impala_layers():
            row = {"impl": f"torch_{layout}", "layer": name, "count": count}
            row.update(time_layer(request["batch"], size, cin, cout, layout,
                                  request["repeats"], request["rounds"]))
            rows.append(row)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "rows": rows}), flush=True)


if __name__ == "__main__":
    main()
