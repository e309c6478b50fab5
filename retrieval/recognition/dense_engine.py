"""The dense recognition engine: torch ``[B, d] x [K, C, d] -> max over K -> top over C``, on the GPU when
torch has one. See retrieval/recognition/engine.py for the two-step design."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from unibind.indexer.runtime.device import Device
from unibind.retrieval.recognition.engine import (
    LOW_PRECISION_NEAR_TIE,
    NEAR_TIE,
    CentreTable,
    RecognitionEngine,
    member_table,
    top_mean,
)

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET = 512 << 20  # bytes of temporaries per dense chunk
# up to this many member scores, one torch.topk over K beats inserting slot by slot (its K * (2m - 1) small ops cost
# ~1.3 ms whatever P is); beyond it topk's strided selection is the slower (measured on 2 CPU cores: at K = 50,
# P = 1,000 topk 0.36 ms vs 1.1 ms; P = 10,000 topk 3.8 ms vs 2.3 ms)
TOPK_MAX_CELLS = 1 << 17
# on the CPU, top_m > 1 nominates from a chunk of up to this many queries one query at a time in NumPy (_top_m_row):
# its ~15 steps on small arrays cost ~1-5 us each where the batched torch path's cost ~10-30 us each. Interleaved
# A/B at K = 50, d = 384, m = 3, 2 cores, p50 (2026-12-01): C = 1,000, B = 1 / 2 / 8 / 16: 2.15 / 2.18 / 5.13 / 7.45 ms
# vs torch 2.34 / 2.41 / 5.37 / 7.23 ms; C = 21,000 within noise up to B = 8 and 4 % slower at 16
NUMPY_ROWS_MAX = 8


class DenseEngine(RecognitionEngine):
    """Torch: members padded to K_max per category; ``[B, d] x [K, C, d] -> max over K -> top over C``.

    The padded members are stored slot-major, [K, C, d]: the max over K is then an elementwise max of
    K contiguous [B, C] slices (about twice as fast as reducing K inner values per category). Padding
    repeats a category's first member, which leaves the max unchanged, so no -inf mask pass is needed
    (for top_m > 1, only the member rows of the categories whose mean of the best m is taken are masked).
    Queries (and, for large label subsets, categories) go in chunks so temporaries stay under
    ``memory_budget`` bytes."""

    name = "dense"
    PROBE = 4

    def __init__(
        self, table: CentreTable, device: Device, memory_budget: int = DEFAULT_MEMORY_BUDGET, *, top_m: int = 1
    ) -> None:
        super().__init__(table, device, top_m)
        self.budget = int(memory_budget)
        C, K = table.n_categories, table.k_max
        members = member_table(table)  # [C, K], -1 past a category's last member
        slots = np.where(members < 0, members[:, :1], members).T  # [K, C] member row per slot; padding = first
        self.slots = np.ascontiguousarray(slots)
        padded = torch.from_numpy(table.vectors[self.slots.ravel()])  # [K*C, d], slot-major
        self.members = padded.to(device.torch).view(K, C, table.dim)  # [K, C, d]

    def _tolerance(self) -> float:
        tf32 = self.device.is_cuda and torch.backends.cuda.matmul.allow_tf32
        return LOW_PRECISION_NEAR_TIE if tf32 else NEAR_TIE

    def _top_mean(self, member: torch.Tensor, m_eff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[K, P] member scores of P (query, category) pairs (-inf: padding) and [P] m' = min(top_m, |C|) →
        (mean of each pair's m' best [P], its m'-th best [P])."""
        K, P = member.shape
        m = min(self.top_m, K)
        if m <= 4 and K * P > TOPK_MAX_CELLS:  # insert slot after slot into the m best so far: 2m - 1 ops on [P] rows
            top = member[:m].clone()  # [m, P], sorted below
            if m > 1:
                top = torch.sort(top, dim=0, descending=True).values
            for j in range(m, K):
                x = member[j]
                for r in range(m):
                    lower = torch.minimum(top[r], x) if r + 1 < m else None
                    torch.maximum(top[r], x, out=top[r])
                    x = lower
        else:
            top = torch.topk(member, m, dim=0).values  # [m, P], best first
        keep = torch.arange(m, device=member.device)[:, None] < m_eff[None, :]
        mean = torch.where(keep, top, 0.0).sum(dim=0) / m_eff
        return mean, top.gather(0, (m_eff - 1)[None, :])[0]

    def _top_m_candidates(
        self,
        best: torch.Tensor,
        member_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        m_eff: torch.Tensor,
        k: int,
        tol: float,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """top_m > 1: from [n, Ca] category maxima and ``member_scores(bi, ci)`` ([K, P] member scores of
        the pairs, -inf padding) → (bi, ci, [K, P] member scores, threshold) of the candidate categories,
        in parts.

        S_m <= max, so ``low`` = the k-th best S_m of the PROBE * k categories with the best maxima bounds
        the k-th best S_m from below, and only the categories whose max is >= low - tol need their S_m."""
        n, Ca = best.shape
        probe = min(Ca, self.PROBE * k)
        top = torch.topk(best, probe, dim=1).indices  # [n, probe]

        def scored(bi: torch.Tensor, ci: torch.Tensor) -> tuple[torch.Tensor, ...]:
            member = member_scores(bi, ci)  # [K, P]
            return (bi, ci, member, *self._top_mean(member, m_eff[ci]))  # + mean, m'-th best

        parts = [scored(torch.arange(n, device=best.device).repeat_interleave(probe), top.reshape(-1))]
        low = torch.topk(parts[0][3].view(n, probe), k, dim=1).values[:, -1]  # [n]
        more = best >= (low - tol)[:, None]  # [n, Ca] the other categories whose max reaches low - tol
        more.scatter_(1, top, False)
        if not bool(more.any()):  # every category that can reach the top k was probed: low is the k-th best S_m
            bi, ci, member, mean, mth = parts[0]
            keep = mean >= low[bi] - tol
            return [(bi[keep], ci[keep], member[:, keep], mth[keep] - tol)]
        parts.append(scored(*torch.nonzero(more, as_tuple=True)))
        scores = torch.full((n, Ca), float("-inf"), device=best.device)
        for bi, ci, _, mean, _ in parts:
            scores[bi, ci] = mean
        kth = torch.topk(scores, k, dim=1).values[:, -1]  # [n]
        out = []
        for bi, ci, member, mean, mth in parts:
            keep = mean >= kth[bi] - tol
            out.append((bi[keep], ci[keep], member[:, keep], mth[keep] - tol))
        return out

    def _top_m_row(
        self, scores: np.ndarray, counts: np.ndarray, k: int, tol: float, padded: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """top_m > 1 for one query, in NumPy (CPU): [K, Ca] member scores (padding slots repeat a category's
        first member) and [Ca] members per category → nominated (slots, categories) pairs. The same rule as
        :meth:`_top_m_candidates`: probe the PROBE * k best maxima, bound the k-th best S_m from below, score
        every other category whose max reaches that bound, keep the categories within tol of the k-th best
        S_m and, in each, the members within tol of its m'-th best."""
        K, Ca = scores.shape
        best = scores.max(axis=0)  # [Ca]
        probe = min(Ca, self.PROBE * k)
        top = np.argpartition(best, Ca - probe)[Ca - probe :] if probe < Ca else np.arange(Ca)
        m_all = np.minimum(counts, self.top_m)

        def scored(ci: np.ndarray) -> tuple[np.ndarray, ...]:
            member = scores[:, ci].T  # [P, K] (a copy)
            if padded:
                member[np.arange(K)[None, :] >= counts[ci][:, None]] = -np.inf
            return (ci, member, *top_mean(member, m_all[ci], self.top_m))  # + mean, m'-th best

        parts = [scored(top)]
        low = np.partition(parts[0][2], probe - k)[probe - k]  # k-th best S_m of the probe
        more = best >= low - tol
        more[top] = False
        if more.any():
            parts.append(scored(np.flatnonzero(more)))
            means = np.concatenate([p[2] for p in parts])
            low = np.partition(means, len(means) - k)[len(means) - k]  # k-th best S_m of every candidate
        slots_out, cats_out = [], []
        for ci, member, mean, mth in parts:
            keep = mean >= low - tol
            p, j = np.nonzero(member[keep] >= (mth[keep] - tol)[:, None])
            slots_out.append(j)
            cats_out.append(ci[keep][p])
        return np.concatenate(slots_out), np.concatenate(cats_out)

    def _nominate(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        dev, tol = self.device.torch, self._tolerance()
        B, d = q.shape
        K = self.table.k_max if allowed is None else int(self.table.counts[allowed].max())
        slots = self.slots if allowed is None else self.slots[:K, allowed]  # [K, Ca]
        Ca = slots.shape[1]
        cats = None if allowed is None else torch.from_numpy(allowed).to(dev)
        c_step = max(1, self.budget // (4 * K))  # scores [1, K, c] fit the budget
        if cats is not None:
            c_step = min(c_step, max(1, self.budget // (4 * K * d)))  # so does a gathered [K, c, d] block
        qt = torch.from_numpy(q).to(dev)  # [B, d]
        counts = torch.from_numpy(self.table.counts if allowed is None else self.table.counts[allowed]).to(dev)
        m_eff = counts.clamp(max=self.top_m)  # [Ca] m' = min(m, |C|)
        padded = self.top_m > 1 and bool((counts < K).any())
        slot = torch.arange(K, device=dev)[:, None]  # [K, 1]

        def masked(member: torch.Tensor, ci: torch.Tensor) -> torch.Tensor:  # [K, P]: -inf in padding slots
            return member.masked_fill_(slot >= counts[ci][None, :], float("-inf")) if padded else member

        def block(c0: int, c1: int) -> torch.Tensor:  # [K, c, d] members of allowed categories c0..c1
            if cats is None:
                return self.members if (c0, c1) == (0, Ca) else self.members[:, c0:c1]
            return self.members[:K].index_select(1, cats[c0:c1])

        def pick(
            bi: torch.Tensor, ci: torch.Tensor, member: torch.Tensor, threshold: torch.Tensor
        ) -> tuple[np.ndarray, np.ndarray]:  # nominated (query rows, member rows)
            p, j = torch.nonzero(member >= threshold[:, None], as_tuple=True)  # member: [P, K] approx scores
            return bi[p].cpu().numpy(), slots[j.cpu().numpy(), ci[p].cpu().numpy()]

        out_q, out_m = [], []
        if Ca <= c_step:  # one category block: a query chunk's scores stay whole, members are picked from them
            z = block(0, Ca).reshape(K * Ca, d)  # [K*Ca, d]
            b_step = max(1, self.budget // (4 * K * Ca))
            buf = torch.empty((min(B, b_step), K * Ca), dtype=torch.float32, device=dev)
            for b0 in range(0, B, b_step):
                n = min(b_step, B - b0)
                scores = torch.mm(qt[b0 : b0 + n], z.T, out=buf[:n]).view(n, K, Ca)  # [n, K, Ca]
                best = scores.amax(dim=1)  # [n, Ca]
                if self.top_m > 1 and not self.device.is_cuda and n <= NUMPY_ROWS_MAX:
                    rows = scores.numpy()  # [n, K, Ca] a view
                    counts_np = counts.numpy()
                    qrows_l, mrows_l = [], []
                    for i in range(n):
                        j, c = self._top_m_row(rows[i], counts_np, k, tol, padded)
                        qrows_l.append(np.full(len(j), i, dtype=np.int64))
                        mrows_l.append(slots[j, c])
                    qrows, mrows = np.concatenate(qrows_l), np.concatenate(mrows_l)
                elif self.top_m > 1:
                    def gathered(bi: torch.Tensor, ci: torch.Tensor, scores: torch.Tensor = scores) -> torch.Tensor:
                        return masked(scores[bi, :, ci].T.contiguous(), ci)  # [K, P]

                    picked = [pick(b, c, member.T, t) for b, c, member, t in
                              self._top_m_candidates(best, gathered, m_eff, k, tol)]
                    qrows, mrows = (np.concatenate(x) for x in zip(*picked))
                else:
                    threshold = torch.topk(best, k, dim=1).values[:, -1] - tol  # [n]
                    bi, ci = torch.nonzero(best >= threshold[:, None], as_tuple=True)  # candidate categories
                    qrows, mrows = pick(bi, ci, scores[bi, :, ci], threshold[bi])
                out_q.append(qrows + b0)
                out_m.append(mrows)
            return np.concatenate(out_q), np.concatenate(out_m)

        # several category blocks: pass 1 keeps only category maxima, pass 2 rescores candidates' members
        best = torch.empty((B, Ca), dtype=torch.float32, device=dev)  # [B, Ca]
        b_step = max(1, self.budget // (4 * K * c_step))
        buf = torch.empty(min(B, b_step) * K * c_step, dtype=torch.float32, device=dev)
        for c0 in range(0, Ca, c_step):
            c1 = min(Ca, c0 + c_step)
            z = block(c0, c1).reshape(K * (c1 - c0), d)  # [K*c, d]
            for b0 in range(0, B, b_step):
                n = min(b_step, B - b0)
                scores = torch.mm(qt[b0 : b0 + n], z.T, out=buf[: n * K * (c1 - c0)].view(n, K * (c1 - c0)))
                best[b0 : b0 + n, c0:c1] = scores.view(n, K, c1 - c0).amax(dim=1)
        p_step = max(1, self.budget // (4 * K * d))

        def rescored(b: torch.Tensor, c: torch.Tensor, layout: str = "pk") -> torch.Tensor:
            z = self.members[:K].index_select(1, c if cats is None else cats[c])  # [K, P, d]
            return torch.einsum(f"kpd,pd->{layout}", z, qt[b])  # [P, K] ("pk") or [K, P] ("kp")

        if self.top_m > 1:
            def member_scores(bi: torch.Tensor, ci: torch.Tensor) -> torch.Tensor:  # [K, P]
                parts = [rescored(bi[p0 : p0 + p_step], ci[p0 : p0 + p_step], "kp") for p0 in range(0, len(bi), p_step)]
                return masked(torch.cat(parts, dim=1) if parts else torch.empty((K, 0), device=dev), ci)

            for b, c, member, t in self._top_m_candidates(best, member_scores, m_eff, k, tol):
                qrows, mrows = pick(b, c, member.T, t)
                out_q.append(qrows)
                out_m.append(mrows)
            return np.concatenate(out_q), np.concatenate(out_m)
        threshold = torch.topk(best, k, dim=1).values[:, -1] - tol  # [B]
        bi, ci = torch.nonzero(best >= threshold[:, None], as_tuple=True)
        for p0 in range(0, len(bi), p_step):
            b, c = bi[p0 : p0 + p_step], ci[p0 : p0 + p_step]
            qrows, mrows = pick(b, c, rescored(b, c), threshold[b])
            out_q.append(qrows)
            out_m.append(mrows)
        return np.concatenate(out_q), np.concatenate(out_m)
