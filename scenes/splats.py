"""The Gaussian splat container used across the runtime.

Storage follows the Inria 3DGS PLY conventions so that files round-trip without
re-parameterisation: log-scales, opacity logits, wxyz quaternions (not necessarily
unit), and SH coefficients with the DC term first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from scenes.errors import ShapeError

__all__ = [
    "Splats",
    "SH_C0",
    "sh_basis_terms",
    "sh_degree_from_coeffs",
    "num_sh_coeffs",
    "rgb_to_sh0",
    "sh0_to_rgb",
]

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))
# Real SH basis constants of bands 1-3 (the Inria 3DGS / gsplat convention), defined once for the project.
SH_C1 = 0.4886025119029199  # sqrt(3 / (4 pi))
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis_terms(x, y, z, degree: int) -> list:
    """The real SH basis functions of degrees 1..``degree`` at a unit direction ``(x, y, z)``.

    The one definition of the basis (signs and ordering ``m = -l .. l`` within a degree, Condon-Shortley
    phase) shared by the rasterizers, physics and export. Written with arithmetic only, so ``x, y, z``
    may be numpy arrays or torch tensors (autograd flows through); the degree-0 term is the constant
    ``SH_C0``, which the caller broadcasts in its own array type.
    """
    out = []
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return out


def num_sh_coeffs(degree: int) -> int:
    """Number of SH coefficients per colour channel for ``degree`` (1, 4, 9, 16)."""
    return (degree + 1) ** 2


def sh_degree_from_coeffs(k: int) -> int:
    """Inverse of :func:`num_sh_coeffs`; raises for a count that is not a square."""
    for d in range(4):
        if num_sh_coeffs(d) == k:
            return d
    raise ShapeError(f"sh: {k} coefficients per channel is not 1, 4, 9 or 16 (SH degree 0-3)")


def rgb_to_sh0(rgb: np.ndarray) -> np.ndarray:
    """Colour in [0, 1] to the DC SH coefficient (3DGS convention: c = 0.5 + C0 * f_dc)."""
    return (np.asarray(rgb, np.float32) - 0.5) / SH_C0


def sh0_to_rgb(sh0: np.ndarray) -> np.ndarray:
    """DC SH coefficient to colour (unclipped)."""
    return np.asarray(sh0, np.float32) * SH_C0 + 0.5


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True, eq=False)
class Splats:
    """A set of N Gaussian splats (numpy float32 arrays, validated on construction).

    ``opacities`` may hold ``+inf`` (an opacity of exactly one, as some writers store);
    every other value must be finite.
    """

    means: np.ndarray  # [N, 3] world positions, metres
    quats: np.ndarray  # [N, 4] rotations, wxyz, not necessarily normalised
    log_scales: np.ndarray  # [N, 3] natural log of the per-axis standard deviations
    opacity_logits: np.ndarray  # [N] logit of the opacity
    sh: np.ndarray  # [N, K, 3] SH coefficients, K in (1, 4, 9, 16); sh[:, 0] is the DC term
    extra: dict = field(default_factory=dict)  # unrecognised per-splat fields kept from a file, name -> [N]

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            value = getattr(self, name)
            try:
                arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
            except (TypeError, ValueError) as exc:
                raise ShapeError(f"Splats.{name}: cannot convert to a float32 array ({exc})") from exc
            arrays[name] = arr
            object.__setattr__(self, name, arr)
        n = arrays["means"].shape[0] if arrays["means"].ndim == 2 else -1
        expected = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,)}
        for name, shape in expected.items():
            if arrays[name].shape != shape or n < 0:
                raise ShapeError(f"Splats.{name}: expected shape {_fmt(shape)}, got {arrays[name].shape}")
        sh = arrays["sh"]
        if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
            raise ShapeError(f"Splats.sh: expected shape (N={n}, K, 3), got {sh.shape}")
        sh_degree_from_coeffs(sh.shape[1])
        for name, arr in arrays.items():
            if np.isfinite(arr).all():  # fast path: no per-element bookkeeping for clean data
                continue
            bad = ~np.isfinite(arr)
            if name == "opacity_logits":
                bad &= ~np.isposinf(arr)
            count = int(bad.sum())
            if count:
                rows = np.unique(np.nonzero(bad)[0])
                raise ShapeError(
                    f"Splats.{name}: {count} non-finite value(s) in {rows.size} splat(s) "
                    f"(first at index {int(rows[0])}); remove or repair them (read_splats(..., drop_invalid=True) or "
                    "`hybrid convert --drop-invalid` drop such splats)"
                )
        norms = np.linalg.norm(arrays["quats"], axis=1)
        zero = int((norms == 0).sum())
        if zero:
            raise ShapeError(
                f"Splats.quats: {zero} zero-length quaternion(s) (first at index {int(np.argmax(norms == 0))})"
            )
        for key, value in list(self.extra.items()):
            arr = np.asarray(value)
            if arr.shape[:1] != (n,):
                raise ShapeError(f"Splats.extra[{key!r}]: expected {n} rows, got shape {arr.shape}")

    # ----------------------------------------------------------------- properties
    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_coeffs(self.sh.shape[1])

    @property
    def scales(self) -> np.ndarray:
        """[N, 3] standard deviations (exp of the log-scales)."""
        return np.exp(self.log_scales)

    @property
    def opacities(self) -> np.ndarray:
        """[N] opacities in [0, 1] (sigmoid of the logits; +inf maps to 1)."""
        return _sigmoid(self.opacity_logits)

    @property
    def unit_quats(self) -> np.ndarray:
        """[N, 4] normalised wxyz quaternions."""
        return self.quats / np.linalg.norm(self.quats, axis=1, keepdims=True)

    @property
    def colors(self) -> np.ndarray:
        """[N, 3] view-independent colour from the DC term (unclipped)."""
        return sh0_to_rgb(self.sh[:, 0])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of the centres, ``(min [3], max [3])``; zeros when empty."""
        if len(self) == 0:
            return np.zeros(3, np.float32), np.zeros(3, np.float32)
        return self.means.min(axis=0), self.means.max(axis=0)

    # ----------------------------------------------------------------- construction
    @classmethod
    def empty(cls, sh_degree: int = 0) -> Splats:
        k = num_sh_coeffs(sh_degree)
        return cls(np.zeros((0, 3)), np.zeros((0, 4)), np.zeros((0, 3)), np.zeros((0,)), np.zeros((0, k, 3)))

    @classmethod
    def from_activated(
        cls,
        means: np.ndarray,  # [N, 3]
        quats: np.ndarray,  # [N, 4] wxyz
        scales: np.ndarray,  # [N, 3] standard deviations (> 0)
        opacities: np.ndarray,  # [N] in (0, 1]
        colors: np.ndarray | None = None,  # [N, 3] in [0, 1]
        sh: np.ndarray | None = None,  # [N, K, 3] (overrides colors)
    ) -> Splats:
        """Build from post-activation values (as gsplat's rasterizer takes them)."""
        scales = np.asarray(scales, np.float64)
        opacities = np.asarray(opacities, np.float64)
        if np.any(scales <= 0):
            raise ShapeError(f"scales: {int((scales <= 0).sum())} value(s) <= 0; scales must be positive")
        if np.any((opacities < 0) | (opacities > 1)):
            raise ShapeError("opacities: values must lie in [0, 1]")
        with np.errstate(divide="ignore"):
            logits = np.log(opacities) - np.log1p(-opacities)
        if sh is None:
            if colors is None:
                raise ShapeError("from_activated: give colors [N, 3] or sh [N, K, 3]")
            sh = rgb_to_sh0(colors)[:, None, :]
        return cls(means, quats, np.log(scales), logits, sh)

    def with_(self, **changes) -> Splats:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    def subset(self, index: np.ndarray) -> Splats:
        """The splats selected by a boolean mask or an index array."""
        index = np.asarray(index)
        extra = {k: np.asarray(v)[index] for k, v in self.extra.items()}
        return Splats(
            self.means[index],
            self.quats[index],
            self.log_scales[index],
            self.opacity_logits[index],
            self.sh[index],
            extra,
        )

    def with_sh_degree(self, degree: int) -> Splats:
        """Truncate or zero-pad the SH coefficients to ``degree``."""
        k = num_sh_coeffs(degree)
        cur = self.sh.shape[1]
        if k <= cur:
            sh = self.sh[:, :k]
        else:
            sh = np.concatenate([self.sh, np.zeros((len(self), k - cur, 3), np.float32)], axis=1)
        return self.with_(sh=sh)

    @staticmethod
    def concat(parts: list[Splats]) -> Splats:
        """Concatenate splat sets (SH padded to the highest degree)."""
        if not parts:
            return Splats.empty()
        degree = max(p.sh_degree for p in parts)
        parts = [p.with_sh_degree(degree) for p in parts]
        return Splats(
            np.concatenate([p.means for p in parts]),
            np.concatenate([p.quats for p in parts]),
            np.concatenate([p.log_scales for p in parts]),
            np.concatenate([p.opacity_logits for p in parts]),
            np.concatenate([p.sh for p in parts]),
        )

    @staticmethod
    def invalid_mask(
        means: np.ndarray, quats: np.ndarray, log_scales: np.ndarray, opacity_logits: np.ndarray, sh: np.ndarray
    ) -> np.ndarray:
        """[N] True where a splat has a non-finite field (``+inf`` opacity allowed) or a zero quaternion."""
        bad = ~np.isfinite(means).all(1) | ~np.isfinite(quats).all(1) | ~np.isfinite(log_scales).all(1)
        bad |= ~(np.isfinite(opacity_logits) | np.isposinf(opacity_logits))
        bad |= ~np.isfinite(sh.reshape(len(sh), -1)).all(1)
        bad |= ~(np.abs(quats).sum(1) > 0)
        return bad

    def to_torch(self, device: str = "cpu") -> dict:
        """Post-activation torch tensors as :func:`render.rasterize` takes them."""
        import torch

        return {
            "means": torch.from_numpy(self.means).to(device),
            "quats": torch.from_numpy(self.unit_quats.astype(np.float32)).to(device),
            "scales": torch.from_numpy(self.scales.astype(np.float32)).to(device),
            "opacities": torch.from_numpy(self.opacities.astype(np.float32)).to(device),
            "sh": torch.from_numpy(self.sh).to(device),
        }


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join("N" if s == -1 else str(s) for s in shape) + ")"
