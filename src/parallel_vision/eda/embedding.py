"""Sections 12-14: PCA, t-SNE and PCA reconstruction (scikit-learn).

Colour images: each image is one vector of all its H×W×3 values, so the components are RGB images.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from parallel_vision.eda.base import (
    AnalysisResult,
    Table,
    as_float,
    colour_input,
    image_grid,
    is_colour,
    new_figure,
    shape_text,
    stratified_sample,
)

THRESHOLDS = (0.90, 0.95, 0.99)
RECON_COMPONENTS = (10, 50, 150)
KNN_K = 10
PARALLEL_TSNE_MIN = 2000


def _vector_note(images: np.ndarray) -> tuple[str, str]:
    """(input, note) for sections that treat each image as the vector of all its values."""
    return colour_input(
        is_colour(images),
        f"Colour images: each image is one vector of all its {shape_text(images.shape[1:])} = "
        f"{int(np.prod(images.shape[1:])):,} values (0..1), so colour takes part as it is.",
    )


RANK_TOL = 1e-10
"""Explained-variance ratio below which a component counts as numerically zero."""


def components_for(cumulative: np.ndarray, threshold: float) -> int:
    """Smallest number of components whose cumulative explained variance reaches `threshold`."""
    return int(np.searchsorted(cumulative, threshold - 1e-12) + 1)


def knn_agreement(points: np.ndarray, labels: np.ndarray, k: int = KNN_K) -> float:
    """Mean share of each point's k nearest neighbours (itself excluded) that have its label."""
    nn = NearestNeighbors(n_neighbors=k + 1).fit(points)
    _, ind = nn.kneighbors(points)
    return float((labels[ind[:, 1:]] == labels[:, None]).mean())


def _class_colors(k: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i) for i in range(k)]


def _scatter(ax, xy: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> None:
    colors = _class_colors(len(class_names))
    for c, name in enumerate(class_names):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=3, alpha=0.6, color=colors[c], label=str(name), linewidths=0)
    ax.legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def fit_pca(images: np.ndarray, rng: np.random.Generator, fit_sample: int | None = None) -> tuple[PCA, int]:
    """PCA with all components on 0..1 pixels (all channels). `covariance_eigh` is exact and fast when N >> pixels."""
    idx = (
        np.arange(len(images))
        if fit_sample is None or fit_sample >= len(images)
        else np.sort(rng.choice(len(images), size=fit_sample, replace=False))
    )
    x = as_float(images[idx])
    solver = "covariance_eigh" if len(x) >= x.shape[1] else "full"
    return PCA(svd_solver=solver, random_state=0).fit(x), len(idx)


def pca_analysis(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    rng: np.random.Generator,
    fit_sample: int | None = None,
    scatter_sample: int = 5000,
) -> AnalysisResult:
    """Explained-variance curve, components for 90/95/99 %, first components as images, 2-D scatter."""
    t0 = time.perf_counter()
    pca, n_fit = fit_pca(images, rng, fit_sample)
    fit_s = time.perf_counter() - t0
    ratio = pca.explained_variance_ratio_
    cum = np.cumsum(ratio)
    needed = {f"{int(t * 100)}": components_for(cum, t) for t in THRESHOLDS}
    rank = int((ratio > RANK_TOL).sum())

    sidx = stratified_sample(labels, scatter_sample, rng)
    xy = pca.transform(as_float(images[sidx]))[:, :2]
    agree_2d = knn_agreement(xy, labels[sidx])

    curve = new_figure(9, 3.6)
    ax = curve.add_subplot(1, 2, 1)
    comps = np.arange(1, len(cum) + 1)
    ax.plot(comps, cum * 100, color="tab:blue")
    for (t, n), color in zip(needed.items(), ("tab:green", "tab:orange", "tab:red"), strict=True):
        ax.axhline(int(t), color=color, lw=0.8, ls="--")
        ax.axvline(n, color=color, lw=0.8, ls="--", label=f"{t}%: {n} components")
    ax.set_xlabel("number of components")
    ax.set_ylabel("cumulative explained variance (%)")
    ax.set_title("Cumulative explained variance", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    ax = curve.add_subplot(1, 2, 2)
    # Components past the data's rank carry only rounding noise (constant pixels); leave them out.
    ax.semilogy(comps[:rank], ratio[:rank] * 100, color="tab:blue")
    ax.set_xlabel("component")
    ax.set_ylabel("explained variance (%), log scale")
    ax.set_title(f"Per-component explained variance (first {rank})", fontsize=10)
    ax.grid(alpha=0.3)
    curve.tight_layout()

    scatter = new_figure(7.5, 5.5)
    ax = scatter.add_subplot()
    _scatter(ax, xy, labels[sidx], class_names)
    ax.set_xlabel(f"PC1 ({ratio[0] * 100:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({ratio[1] * 100:.1f}% of variance)")
    ax.set_title(f"First two principal components, stratified sample of {len(sidx):,} images", fontsize=10)
    scatter.tight_layout()

    colour = is_colour(images)
    n_show = min(10, pca.n_components_)
    eig = pca.components_[:n_show].reshape(1, n_show, *images.shape[1:])
    lim = float(np.abs(eig).max())
    eigfig = image_grid(
        eig, col_labels=[f"PC{i + 1}" for i in range(n_show)], cmap="RdBu_r", vmin=-lim, vmax=lim, cell=0.9
    )

    numbers = {
        "fit_images": n_fit,
        "fit_solver": pca.svd_solver,
        "fit_seconds": round(fit_s, 3),
        "pixel_scale": "0..1",
        "n_components": int(pca.n_components_),
        "nonzero_variance_components": rank,
        "rank_tolerance": RANK_TOL,
        "components_needed": needed,
        "explained_variance_ratio_first10": ratio[:10].round(6).tolist(),
        "cumulative_explained_variance": cum.round(6).tolist(),
        "scatter_sample": int(len(sidx)),
        "knn_k": KNN_K,
        "knn_class_agreement_2d": round(agree_2d, 4),
    }
    caption = (
        f"PCA fitted on {n_fit:,} training images (pixels on 0..1, all {pca.n_components_} components). "
        f"Reaching 90%, 95% and 99% of the variance takes {needed['90']}, {needed['95']} and {needed['99']} "
        f"components; the first two explain {ratio[0] * 100:.1f}% "
        f"and {ratio[1] * 100:.1f}%, and {rank} components "
        f"have a variance ratio above {RANK_TOL:g}. In the 2-D "
        f"projection of a stratified sample of {len(sidx):,}, {agree_2d * 100:.1f}% of each image's {KNN_K} "
        f"nearest neighbours share its class. The strip of images shows the first {n_show} components "
        + (
            "as RGB images (mid-grey is 0; a channel brighter than grey is positive, darker negative)."
            if colour
            else "(red positive, blue negative)."
        )
    )
    source, note = _vector_note(images)
    table = Table(["variance", "components"], [[f"{t}%", n] for t, n in needed.items()])
    return AnalysisResult(
        key="pca",
        title="Principal component analysis (PCA)",
        numbers=numbers,
        caption=caption,
        figures={"pca_variance": curve, "pca_components": eigfig, "pca_scatter": scatter},
        tables=[table],
        extras={"pca": pca},
        input=source,
        note=note,
    )


def tsne_embedding(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    rng: np.random.Generator,
    sample: int = 5000,
    pca: PCA | None = None,
    pca_dims: int = 50,
    perplexity: float = 30.0,
    max_iter: int = 1000,
    seed: int = 0,
    n_jobs: int | None = None,
) -> AnalysisResult:
    """2-D t-SNE of a stratified sample, on its first `pca_dims` principal components."""
    sidx = stratified_sample(labels, sample, rng)
    x = as_float(images[sidx])
    y = labels[sidx]
    if pca is None or pca.n_components_ < pca_dims:
        pca = PCA(n_components=min(pca_dims, *x.shape), svd_solver="randomized", random_state=seed).fit(x)
        pca_source = "sample"
    else:
        pca_source = "pca section"
    dims = min(pca_dims, pca.n_components_)
    z = pca.transform(x)[:, :dims]
    retained = float(pca.explained_variance_ratio_[:dims].sum())
    perp = min(perplexity, max(1.0, (len(z) - 1) / 3.0 - 1e-6))
    # Barnes-Hut's OpenMP threads only pay off on larger samples; on a few hundred points (or a busy
    # machine) thread hand-offs cost more than they save.
    threads = max(1, n_jobs or 1) if len(z) >= PARALLEL_TSNE_MIN else 1
    t0 = time.perf_counter()
    tsne = TSNE(
        n_components=2,
        perplexity=perp,
        init="pca",
        learning_rate="auto",
        max_iter=max_iter,
        random_state=seed,
        n_jobs=threads,
    )
    with threadpool_limits(limits=threads, user_api="openmp"):
        emb = tsne.fit_transform(z)
    secs = time.perf_counter() - t0
    agree_emb = knn_agreement(emb, y)
    agree_pca = knn_agreement(z, y)

    fig = new_figure(7.5, 6)
    ax = fig.add_subplot()
    _scatter(ax, emb, y, class_names)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {len(sidx):,} training images (perplexity {perp:g}, from {dims} PCA dims)", fontsize=10)
    fig.tight_layout()

    numbers = {
        "sample_size": int(len(sidx)),
        "class_counts": np.bincount(y, minlength=len(class_names)).tolist(),
        "pca_dims": int(dims),
        "pca_from": pca_source,
        "pca_variance_retained": round(retained, 4),
        "perplexity": float(perp),
        "max_iter": int(max_iter),
        "n_iter": int(getattr(tsne, "n_iter_", max_iter)),
        "kl_divergence": round(float(tsne.kl_divergence_), 4),
        "seconds": round(secs, 2),
        "threads": threads,
        "knn_k": KNN_K,
        "knn_class_agreement_tsne": round(agree_emb, 4),
        "knn_class_agreement_pca_input": round(agree_pca, 4),
    }
    caption = (
        f"t-SNE (scikit-learn, Barnes–Hut, perplexity {perp:g}, {numbers['n_iter']} iterations, final KL "
        f"divergence {numbers['kl_divergence']:.3f}) of a "
        f"stratified sample of {len(sidx):,} training images, "
        f"run on their first {dims} principal components ({retained * 100:.1f}% of the variance). In the 2-D "
        f"map, {agree_emb * 100:.1f}% of each image's {KNN_K} nearest neighbours share its class, vs "
        f"{agree_pca * 100:.1f}% in the {dims}-D PCA input. "
        "t-SNE distances between clusters are not meaningful."
    )
    source, note = _vector_note(images)
    return AnalysisResult("tsne", "t-SNE embedding", numbers, caption, {"tsne": fig}, input=source, note=note)


def pca_reconstruction(
    train_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
    rng: np.random.Generator,
    pca: PCA | None = None,
    components: Sequence[int] = RECON_COMPONENTS,
    n_examples: int = 8,
) -> AnalysisResult:
    """Reconstruct held-out test images from k principal components; MSE per k on the whole test split."""
    if pca is None:
        pca, _ = fit_pca(train_images, rng)
    components = [int(k) for k in components if k <= pca.n_components_]
    x = as_float(test_images)
    scores = pca.transform(x)
    mse, var = [], []
    recon_examples = []
    ex = np.sort(rng.choice(len(x), size=min(n_examples, len(x)), replace=False))
    for k in components:
        rec = scores[:, :k] @ pca.components_[:k] + pca.mean_
        mse.append(float(((rec - x) ** 2).mean()))
        var.append(float(pca.explained_variance_ratio_[:k].sum()))
        recon_examples.append(np.clip(rec[ex], 0, 1))
    grid = np.stack([x[ex]] + recon_examples).reshape(len(components) + 1, len(ex), *test_images.shape[1:])
    mse_ex = [[float(((r - x[e]) ** 2).mean()) for r, e in zip(rec_k, ex, strict=True)] for rec_k in recon_examples]
    fig = image_grid(
        grid,
        row_labels=["original"] + [f"k={k}\nMSE {m:.4f}" for k, m in zip(components, mse, strict=True)],
        col_labels=[f"'{class_names[test_labels[e]]}'" for e in ex],
        vmax=1.0,
        label_width=1.3,
    )
    numbers = {
        "pixel_scale": "0..1",
        "evaluated_on": "test split",
        "n_images": int(len(x)),
        "components": components,
        "mse": [round(m, 6) for m in mse],
        "psnr_db": [round(float(10 * np.log10(1.0 / m)), 3) for m in mse],
        "train_variance_explained": [round(v, 6) for v in var],
        "example_indices": ex.tolist(),
        "example_mse": [[round(v, 6) for v in row] for row in mse_ex],
    }
    parts = ", ".join(f"{m:.4f} at k = {k}" for k, m in zip(components, mse, strict=True))
    caption = (
        f"Test images projected onto the first k principal components of the training set and mapped back. "
        f"Mean squared error over all {len(x):,} test images (pixels on 0..1): {parts}. Top row: originals; "
        f"below: reconstructions."
    )
    table = Table(
        ["components k", "train variance explained %", "test MSE (0..1)", "PSNR (dB)"],
        [
            [k, f"{v * 100:.2f}", f"{m:.5f}", f"{p:.2f}"]
            for k, v, m, p in zip(components, var, mse, numbers["psnr_db"], strict=True)
        ],
    )
    source, note = _vector_note(test_images)
    return AnalysisResult(
        key="reconstruction",
        title="PCA reconstruction",
        numbers=numbers,
        caption=caption,
        figures={"reconstruction": fig},
        tables=[table],
        input=source,
        note=note,
    )
