"""The benchmark cases: agent × encoder × penultimate block (no framework).

A case is a plain dict so that it crosses process boundaries as JSON:

    {"agent": "dqn" | "rainbow", "encoder": "nature" | "impala",
     "block": one of BLOCKS, "batch_size": 32, "num_actions": 6}

Blocks (SPEC §1): `flatten1` flatten → Dense(512) → ReLU; `flatten4` the
same ×4 (2048); `softmoe4` SoftMoE with 4 experts of 512; `softmoe1x4`
"scaled SoftMoE-1", one expert of 2048; `toksum4` tokenized_sum, per-token
Dense(2048) → ReLU → sum over tokens. Pong has 6 actions.
"""

AGENTS = ("dqn", "rainbow")
ENCODERS = ("nature", "impala")
BLOCKS = ("flatten1", "flatten4", "softmoe4", "softmoe1x4", "toksum4")

# Hyper-parameters both peers share with tf_softmoe's presets (SPEC §4).
LEARNING_RATE = 6.25e-5
ADAM_EPSILON = 1.5e-4
NUM_ATOMS = 51
V_MIN, V_MAX = -10.0, 10.0
NOISY_SIGMA0 = 0.1
GAMMA = 0.99
N_STEP = {"dqn": 1, "rainbow": 3}
TARGET_UPDATE_UPDATES = 2000  # 8 000 agent steps / update every 4

# The block's knobs: (penultimate kind, experts, width multiplier k).
BLOCK_SHAPES = {
    "flatten1": ("flatten", None, 1),
    "flatten4": ("flatten", None, 4),
    "softmoe4": ("softmoe", 4, 1),
    "softmoe1x4": ("softmoe", 1, 4),
    "toksum4": ("tokenized_sum", None, 4),
}


def make_case(agent, encoder, block, batch_size=32, num_actions=6):
    """A case dict, validated."""
    if agent not in AGENTS:
        raise ValueError(f"agent={agent!r}: choose one of {list(AGENTS)}.")
    if encoder not in ENCODERS:
        raise ValueError(f"encoder={encoder!r}: choose one of {list(ENCODERS)}.")
    if block not in BLOCKS:
        raise ValueError(f"block={block!r}: choose one of {list(BLOCKS)}.")
    return {"agent": agent, "encoder": encoder, "block": block,
            "batch_size": int(batch_size), "num_actions": int(num_actions)}


def case_key(case):
    """A short unique name, e.g. `rainbow/impala/softmoe4`."""
    return f"{case['agent']}/{case['encoder']}/{case['block']}"


def all_cases(batch_size=32):
    """The full 2 × 2 × 5 matrix of item 1, in a stable order."""
    return [make_case(a, e, b, batch_size) for a in AGENTS for e in ENCODERS
            for b in BLOCKS]


def parse_cases(text, batch_size=32):
    """`"all"`, or comma-separated `agent/encoder/block` names (a `*` in any
    field matches every value), into a list of case dicts."""
    if text == "all":
        return all_cases(batch_size)
    cases, seen = [], set()
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.split("/")
        if len(parts) != 3:
            raise ValueError(
                f"Case {item!r} is not agent/encoder/block, e.g. "
                "rainbow/impala/softmoe4 (a * matches every value).")
        choices = [AGENTS, ENCODERS, BLOCKS]
        picked = []
        for part, valid in zip(parts, choices):
            if part == "*":
                picked.append(valid)
            elif part in valid:
                picked.append((part,))
            else:
                raise ValueError(f"{part!r} in case {item!r}: choose one of "
                                 f"{list(valid)} or *.")
        for a in picked[0]:
            for e in picked[1]:
                for b in picked[2]:
                    case = make_case(a, e, b, batch_size)
                    if case_key(case) not in seen:
                        seen.add(case_key(case))
                        cases.append(case)
    return cases


def synthetic_batch(case, seed, np):
    """A replay-shaped batch of random uint8 frames (NumPy module passed in,
    so each venv uses its own NumPy)."""
    rng = np.random.default_rng(seed)
    b, a = case["batch_size"], case["num_actions"]
    gamma_n = GAMMA ** N_STEP[case["agent"]]
    discount = np.full(b, gamma_n, np.float32)
    discount[::8] = 0.0  # a few terminals
    return {
        "state": rng.integers(0, 256, (b, 84, 84, 4), dtype=np.uint8),
        "action": rng.integers(0, a, b).astype(np.int32),
        "reward": rng.choice([-1.0, 0.0, 1.0], b).astype(np.float32),
        "next_state": rng.integers(0, 256, (b, 84, 84, 4), dtype=np.uint8),
        "discount": discount,
        "importance_weights": rng.uniform(0.2, 1.0, b).astype(np.float32),
    }
