"""Dict round trips shared by the frozen config dataclasses."""

import dataclasses


class DictConfig:
    """`replace`, `to_dict` and a checked `from_dict` for a frozen dataclass."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds the config; unknown keys raise ValueError listing the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown {cls.__name__} fields {unknown}; valid: {sorted(known)}.")
        return cls(**values)
