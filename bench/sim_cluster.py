"""A model of `t12k run` on a cluster of GPU nodes: how long a collection takes, which stage
holds it back, and what each node needs.

    .venv/bin/python bench/sim_cluster.py [--trailers 12000 100000] [--nodes 1 4 16]
        [--cores-per-node 16] [--scenario youtube youtube-tuned mirror] [--split balanced|t12k]
        [cost overrides, see --help]

Every trailer goes download -> normalize -> features, the feature stage finding the shots from
the same decode (`t12k run --decode once`, the default): TransNet V2 and the backbones share the
node's GPU, the decode workers its cores. The model takes per-stage unit costs (the dataclasses
below, each with where it comes from: measured here, or estimated) and gives, per collection and
node count:

- the analytic answer: steady-state throughput = the least of the stages' rates, makespan =
  trailers / throughput + one trailer's way through the empty pipeline (start-up and drain);
- a discrete-event simulation of the same stages with `t12k run`'s scheduling (bounded ready
  queues of `--queue` trailers, downloads paced by one clock, feature calls of up to `--group`
  trailers, two calls per model actor) over trailers of varied length. It checks the analytic
  answer: the two agree within a few percent, except where two limits nearly tie (the table
  then names both) and the simulation is the better figure.

Nodes are alike: C cores, one GPU, a network link. Each node is assumed to have a public
address of its own, and downloads to spread evenly over them (Ray's placement of t12k's
download tasks does not promise that). Costs scale with a trailer's length.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
from collections import deque
from dataclasses import dataclass, field, replace

from t12k.pipeline.fetch import pacing
from t12k.pipeline.fetch.config import FetchConfig
from t12k.pipeline.run.config import RunConfig


@dataclass(frozen=True)
class Collection:
    """What is to be processed. Trailers12k: 12,000 trailers, 407.61 hours, 35,217,616 frames at
    24 fps, about 1.46 M Shot-24 clips (the paper, section 3; issue 5)."""

    trailers: int = 12_000
    seconds: float = 407.61 * 3600 / 12_000  # mean length of a trailer: 122.3 s
    fps: int = 24
    clips_per_second: float = 1.46e6 / (407.61 * 3600)  # Shot-24 clips per second of video (0.995)
    shortest: float = 30.0  # the paper's range of lengths (section 3)
    longest: float = 210.0


@dataclass(frozen=True)
class DownloadCosts:
    """Downloads from the site. t12k's defaults are read from the code."""

    source_mbit: float = 2.5  # bitrate of the source video (720p H.264): pipeline/fetch/config.py's note
    requests: int = 4  # requests yt-dlp makes per video (page + 3 player clients; yt-dlp-wiki PR #57): assumed
    sleep: float = pacing.DEFAULT_SLEEP  # 5 s between download starts; one clock for the cluster (ray_engine._Desk)
    sleep_requests: float = pacing.DEFAULT_SLEEP_REQUESTS  # 1 s between the requests of one video
    workers: int = FetchConfig().workers  # downloads at once: 2, over the whole cluster under --engine ray
    stream_mbit: float = 50.0  # speed of one download stream: assumed
    site_per_hour: float = 300.0  # YouTube: ~300 videos/hour per session (yt-dlp wiki, Extractors): assumed
    # per public address (one guest session each); 0: no site limit


@dataclass(frozen=True)
class CpuCosts:
    """CPU work per trailer, measured on this machine's cores (AMD EPYC)."""

    # ffmpeg normalizing bbb-trailer.mp4 (55 s, 1280x720) to 640x360 H.264 24 fps with t12k's own
    # command (media.normalize_command): 8.06-8.24 CPU s over 2 runs, i.e. 0.149 CPU s per second
    # of video; the output is 4.49 MB, 653 kbit/s.
    normalize_cpu_per_second: float = 0.149
    normalized_kbit: float = 653.0
    # One decode of the 360p video for all six backbones with the resize and the representative
    # frames on the GPU: ffmpeg + worker, 1.43 CPU ms per frame (bench_extract.py --only workers,
    # issue 5's note).
    decode_ms: float = 1.43
    # TransNet V2's 48x27 frames: the separate decode `shots` does today costs 0.25 ms per frame
    # (bench_shots_speed.py, 3,934 frames/s); an upper bound for scaling the single decode's frames.
    shots_ms: float = 0.25
    # per node, beside normalizing and decoding: the feature actor's main process (TransNet V2,
    # batches, copies to the GPU) and the driver, downloads and Ray's own processes
    reserved_cores: int = 2


# GMACs per Shot-24 clip (`t12k backbones`: torchvision's `_ops`, GMACs; 3D ones counted at 16
# frames, scaled here to 24) and features per clip.
BACKBONES = {
    "shufflenet2d": (0.14, 1024),
    "resnet": (4.09, 2048),
    "swin2d": (4.49, 768),
    "shufflenet3d": (0.187 * 24 / 16, 1024),
    "r2plus1d": (40.52 * 24 / 16, 512),
    "swin3d": (43.88 * 24 / 16, 768),
}


@dataclass(frozen=True)
class GpuCosts:
    """GPU work per trailer on one H100/H200-class GPU: ESTIMATED from FLOPs, not measured (no GPU
    was lent to this project)."""

    # TransNet V2: 83.2 GFLOPs per 100-frame window (counted here with torch's FlopCounterMode),
    # run in strict fp32 (shots/transnet.py turns TF32 off); at 25% of the 67 TFLOPs fp32 peak:
    # about 200 windows/s (10,000 frames/s). Windows advance by 50 frames.
    transnet_windows_per_s: float = 200.0
    # The backbones in bf16 at 30% of the 989 TFLOPs dense bf16 peak: 148 TMACs/s (issue 5's note).
    backbone_tmacs: float = 148.0
    backbones: tuple[str, ...] = tuple(BACKBONES)
    speed: float = 1.0  # a factor on both of the above, for other GPUs
    h2d_gb_per_s: float = 20.0  # raw 360p frames to the GPU by DMA, overlapped with the models (issue 5)

    def clips_per_s(self, key: str) -> float:
        return self.speed * self.backbone_tmacs * 1e3 / BACKBONES[key][0]


@dataclass(frozen=True)
class StoreCosts:
    """What a trailer leaves on the shared storage besides its video."""

    compression: float = 1.35  # float32 features, Blosc zstd-5: 0.65 of 0.88 MiB (issue 5, measured)
    frame_bytes: int = 640 * 360 * 3  # a decoded 360p RGB frame


@dataclass(frozen=True)
class Cluster:
    """The nodes and `t12k run`'s scheduling settings."""

    nodes: int = 1
    cores: int = 16
    net_gbit: float = 10.0
    queue: int = RunConfig().queue  # trailers waiting between two stages (over the cluster)
    group: int = RunConfig().group  # most trailers per feature call
    decode_cap: int = 16  # t12k's most decode workers (extract.config.worker_count)
    # how a node's cores are shared: balanced (the split that gives the most trailers per second,
    # to be set with --decode-workers) or t12k (its automatic one: worker_count's decode workers,
    # min(cores - 1, 16), and the Ray placement's spare cores, at least 1, normalizing)
    split: str = "balanced"


@dataclass(frozen=True)
class Costs:
    download: DownloadCosts = field(default_factory=DownloadCosts)
    cpu: CpuCosts = field(default_factory=CpuCosts)
    gpu: GpuCosts = field(default_factory=GpuCosts)
    store: StoreCosts = field(default_factory=StoreCosts)


# ---- one trailer's work ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """One trailer of `seconds`: bytes, CPU seconds and GPU seconds."""

    raw: float  # bytes downloaded
    video: float  # bytes of the normalized video
    features: float  # bytes of the six stores' arrays and the shots store
    download_s: float  # one download's wall time
    normalize_cpu: float
    decode_cpu: float
    gpu_s: float
    h2d_s: float

    def model_s(self, decode_cores: int) -> float:
        """Wall time of the feature stage for this trailer: the decode workers, the GPU and the
        copies overlap, so the slowest of them."""
        return max(self.decode_cpu / max(1, decode_cores), self.gpu_s, self.h2d_s)


def work(costs: Costs, seconds: float, col: Collection) -> Work:
    d, c, g, s = costs.download, costs.cpu, costs.gpu, costs.store
    frames = seconds * col.fps
    clips = seconds * col.clips_per_second
    raw = seconds * d.source_mbit * 1e6 / 8
    feats = clips * sum(BACKBONES[k][1] for k in g.backbones) * 4 / s.compression
    shots = frames * 2  # float16 predictions per frame
    windows = math.ceil(frames / 50)
    gpu = windows / (g.transnet_windows_per_s * g.speed) + clips * sum(1 / g.clips_per_s(k) for k in g.backbones)
    return Work(
        raw=raw,
        video=seconds * c.normalized_kbit * 1e3 / 8,
        features=feats + shots,
        download_s=d.requests * d.sleep_requests + raw * 8 / (d.stream_mbit * 1e6),
        normalize_cpu=seconds * c.normalize_cpu_per_second,
        decode_cpu=frames * (c.decode_ms + c.shots_ms) / 1e3,
        gpu_s=gpu,
        h2d_s=frames * s.frame_bytes / (g.h2d_gb_per_s * 1e9),
    )


def net_bytes(w: Work) -> tuple[float, float]:
    """(in, out) bytes of a node per trailer: the download and the video read back for the one
    decode; the normalized video, the features and the shots written to the shared storage."""
    return w.raw + w.video, w.video + w.features


def split_cores(w: Work, cluster: Cluster, reserved: int) -> tuple[int, int]:
    """(normalizing cores, decode workers) of a node: the split that gives the most trailers per
    second, or t12k's automatic one (`Cluster.split`)."""
    if cluster.split == "t12k":
        dec = max(1, min(cluster.cores - 1, cluster.decode_cap))
        return max(1, cluster.cores - dec), dec
    usable = max(2, cluster.cores - reserved)
    best = (-1.0, 1, usable - 1)
    for dec in range(1, min(usable - 1, cluster.decode_cap) + 1):
        norm = usable - dec
        rate = min(norm / w.normalize_cpu, 1 / w.model_s(dec))
        if rate > best[0] + 1e-12:
            best = (rate, norm, dec)
    return best[1], best[2]


# ---- the analytic model ---------------------------------------------------------------------------


def download_interval(costs: Costs, cluster: Cluster, w: Work) -> float:
    """Least seconds between two download starts over the cluster: the pacing clock, the site's
    per-address limit over the nodes' addresses, and the nodes' links for the bytes each trailer moves."""
    d = costs.download
    site = 3600 / (d.site_per_hour * cluster.nodes) if d.site_per_hour > 0 else 0.0
    link = max(net_bytes(w)) * 8 / (cluster.net_gbit * 1e9 * cluster.nodes)
    return max(d.sleep, site, link)


@dataclass(frozen=True)
class Plan:
    """The analytic answer for one collection on one cluster."""

    rates: dict[str, float]  # trailers per second of each limit, over the cluster
    bottleneck: str
    tie: str | None  # a second limit within 5% of the first: both hold the run back
    throughput: float
    makespan_h: float
    gpu_busy: float
    cores_per_gpu: float  # cores a node needs to keep its GPU busy
    split: tuple[int, int]  # (normalizing cores, decode workers) per node
    scratch_gb: float  # per node
    net_in_mbit: float  # per node, at the throughput
    net_out_mbit: float


def rates(costs: Costs, cluster: Cluster, w: Work, split: tuple[int, int]) -> dict[str, float]:
    """Trailers per second each limit allows over the cluster."""
    d, n = costs.download, cluster.nodes
    norm, dec = split
    out = {
        "download pacing": 1 / d.sleep if d.sleep > 0 else math.inf,
        "site limit": d.site_per_hour * n / 3600 if d.site_per_hour > 0 else math.inf,
        "download slots": d.workers / w.download_s,
        "network": cluster.net_gbit * 1e9 * n / (8 * max(net_bytes(w))),
        "normalize cores": n * norm / w.normalize_cpu,
    }
    side = {"decode cores": w.decode_cpu / dec, "GPU": w.gpu_s, "PCIe": w.h2d_s}
    limit = max(side, key=side.__getitem__)
    out[limit] = n / side[limit]
    return out


def plan(col: Collection, costs: Costs, cluster: Cluster) -> Plan:
    w = work(costs, col.seconds, col)
    split = split_cores(w, cluster, costs.cpu.reserved_cores)
    r = rates(costs, cluster, w, split)
    # the site first among equals: --sleep set to its limit (youtube-tuned) is there for the site
    (x, bottleneck), *rest = sorted((v * (1 - 1e-9 if k == "site limit" else 1), k) for k, v in r.items())
    tie = rest[0][1] if rest and rest[0][0] <= 1.05 * x else None
    fill = w.download_s + w.normalize_cpu + w.model_s(split[1])
    per_node = x / cluster.nodes
    net_in, net_out = net_bytes(w)
    # the longest trailer bounds a queued file: downloads in flight and waiting, then normalizing
    longest = work(costs, col.longest, col)
    waiting = math.ceil((costs.download.workers + cluster.queue) / cluster.nodes) + split[0]
    return Plan(
        rates=r,
        bottleneck=bottleneck,
        tie=tie,
        throughput=x,
        makespan_h=(col.trailers / x + fill) / 3600,
        gpu_busy=x * w.gpu_s / cluster.nodes,
        cores_per_gpu=costs.cpu.reserved_cores + (w.normalize_cpu + w.decode_cpu) / max(w.gpu_s, w.h2d_s),
        split=split,
        scratch_gb=(waiting * longest.raw + split[0] * longest.video) / 1e9,
        net_in_mbit=per_node * net_in * 8 / 1e6,
        net_out_mbit=per_node * net_out * 8 / 1e6,
    )


# ---- the discrete-event simulation ----------------------------------------------------------------


def lengths(col: Collection, count: int, seed: int = 0) -> list[float]:
    """`count` trailer lengths: lognormal, clipped to the paper's range, scaled to its mean (the
    paper gives the range, the mean and 87.9% under 150 s)."""
    rng = random.Random(seed)
    raw = [min(col.longest, max(col.shortest, rng.lognormvariate(math.log(col.seconds), 0.25))) for _ in range(count)]
    scale = col.seconds * count / sum(raw)
    return [x * scale for x in raw]


@dataclass(frozen=True)
class SimResult:
    makespan_h: float
    gpu_busy: float


class Simulation:
    """`t12k run`'s scheduler (pipeline/run/scheduler.py) over simulated time: ready queues of
    at most `queue` trailers before download, normalize and the model stage; a stage starts a
    call only while the queue after it has room; downloads wait for one clock; normalizing runs
    on `nodes x normalizing cores` slots; each node's model actor takes calls of up to `group`
    trailers, two at a time per actor (one running, one waiting), on the least-loaded actor."""

    STAGES = ("download", "normalize", "model")

    def __init__(self, col: Collection, costs: Costs, cluster: Cluster, seed: int = 0):
        self.cluster, self.costs = cluster, costs
        self.works = [work(costs, s, col) for s in lengths(col, col.trailers, seed)]
        mean = work(costs, col.seconds, col)
        self.split = split_cores(mean, cluster, costs.cpu.reserved_cores)
        self.slots = {"download": costs.download.workers, "normalize": cluster.nodes * self.split[0]}
        self.slots["model"] = 2 * cluster.nodes
        self.ready: dict[str, deque[int]] = {s: deque() for s in self.STAGES}
        self.calls = dict.fromkeys(self.STAGES, 0)
        self.source = deque(range(len(self.works)))
        self.events: list[tuple[float, int, str, tuple]] = []
        self.seq = 0
        self.now = 0.0
        self.clock = 0.0  # the earliest start of the next download
        self.actors = [[0.0, 0] for _ in range(cluster.nodes)]  # [free at, calls held]
        self.gpu_busy = 0.0
        self.done = 0

    def _at(self, when: float, kind: str, payload: tuple) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, kind, payload))

    def run(self) -> SimResult:
        while self.done < len(self.works):
            self._admit()
            self._launch()
            when, _, kind, payload = heapq.heappop(self.events)
            self.now = when
            self._finish(kind, payload)
        span = self.now
        return SimResult(span / 3600, self.gpu_busy / (span * self.cluster.nodes) if span else 0.0)

    def _admit(self) -> None:
        while self.source and len(self.ready["download"]) < self.cluster.queue:
            self.ready["download"].append(self.source.popleft())

    def _launch(self) -> None:
        for i, stage in reversed(list(enumerate(self.STAGES))):
            nxt = self.STAGES[i + 1] if i + 1 < len(self.STAGES) else None
            queue = self.ready[stage]
            while queue and self.calls[stage] < self.slots[stage]:
                if nxt is not None and len(self.ready[nxt]) >= self.cluster.queue:
                    break
                most = self.cluster.group if stage == "model" else 1
                ids = tuple(queue.popleft() for _ in range(min(most, len(queue))))
                self.calls[stage] += 1
                getattr(self, f"_start_{stage}")(ids)

    def _start_download(self, ids: tuple) -> None:
        (i,) = ids
        w = self.works[i]
        start = max(self.now, self.clock)  # the call holds its slot while it waits for the clock
        self.clock = start + download_interval(self.costs, self.cluster, w)
        self._at(start + w.download_s, "download", ids)

    def _start_normalize(self, ids: tuple) -> None:
        self._at(self.now + self.works[ids[0]].normalize_cpu, "normalize", ids)

    def _start_model(self, ids: tuple) -> None:
        node = min(range(len(self.actors)), key=lambda k: (self.actors[k][1], self.actors[k][0]))
        actor = self.actors[node]
        start = max(self.now, actor[0])
        took = sum(self.works[i].model_s(self.split[1]) for i in ids)
        self.gpu_busy += sum(self.works[i].gpu_s for i in ids)
        actor[0], actor[1] = start + took, actor[1] + 1
        self._at(start + took, "model", (node, *ids))

    def _finish(self, stage: str, payload: tuple) -> None:
        self.calls[stage] -= 1
        if stage == "model":
            self.actors[payload[0]][1] -= 1
            self.done += len(payload) - 1
            return
        self.ready[self.STAGES[self.STAGES.index(stage) + 1]].extend(payload)


def simulate(col: Collection, costs: Costs, cluster: Cluster, seed: int = 0) -> SimResult:
    return Simulation(col, costs, cluster, seed).run()


# ---- scenarios and the table ----------------------------------------------------------------------


def scenario(name: str, nodes: int, base: DownloadCosts) -> DownloadCosts:
    """The download settings of a scenario on `nodes` nodes.

    youtube: t12k's defaults (--sleep 5 on one clock for the cluster, --workers 2), 300 videos an
    hour per address. youtube-tuned: the same site, with --sleep 12/N and --workers 4N so that each
    of the N addresses may reach its 300 an hour. mirror: the videos served from your own storage
    (no site limit, --sleep 0 --sleep-requests 0 --workers 8N), 200 Mbit/s per stream."""
    if name == "youtube":
        return base
    if name == "youtube-tuned":
        return replace(base, sleep=3600 / base.site_per_hour / nodes if base.site_per_hour else 0, workers=4 * nodes)
    if name == "mirror":
        return replace(base, site_per_hour=0.0, sleep=0.0, sleep_requests=0.0, workers=8 * nodes, stream_mbit=200.0)
    raise ValueError(f"unknown scenario {name}")


SCENARIOS = ("youtube", "youtube-tuned", "mirror")
HEADER = (
    "| scenario | trailers | nodes | makespan (h) | event sim (h) | bottleneck | GPU busy | cores/GPU to fill it "
    "| normalize + decode cores | scratch/node | network in / out per node |"
)


def hours(h: float) -> str:
    return f"{h:.1f}" if h >= 10 else f"{h:.2f}"


def limit_label(p: Plan) -> str:
    """The bottleneck as the table says it: two limits when both hold the run back."""
    pair = {p.bottleneck, p.tie}
    if pair <= {"normalize cores", "decode cores", None}:
        return "cores (normalize + decode)" if p.tie else p.bottleneck
    if pair == {"site limit", "download pacing"}:
        return "site limit"  # --sleep set to the site's limit
    return f"{p.bottleneck} ≈ {p.tie}" if p.tie else p.bottleneck


def row(name: str, col: Collection, costs: Costs, cluster: Cluster, sim: bool) -> str:
    p = plan(col, costs, cluster)
    check = hours(simulate(col, costs, cluster).makespan_h) if sim else "-"
    limit = limit_label(p)
    return (
        f"| {name} | {col.trailers:,} | {cluster.nodes} | {hours(p.makespan_h)} | {check} | {limit} "
        f"| {p.gpu_busy:.0%} | {p.cores_per_gpu:.0f} | {p.split[0]} + {p.split[1]} | {p.scratch_gb:.1f} GB "
        f"| {p.net_in_mbit:.0f} / {p.net_out_mbit:.0f} Mbit/s |"
    )


def pacing_note(costs: Costs, cluster: Cluster) -> str | None:
    """A warning when t12k's pacing lets more downloads start than the site allows the cluster's
    addresses: the site then refuses them ("try again later") rather than slowing them down."""
    d = costs.download
    allowed = d.site_per_hour * cluster.nodes
    if d.site_per_hour <= 0 or d.sleep <= 0 or 3600 / d.sleep <= allowed * 1.001:
        return None
    least = 3600 / allowed
    return (
        f"- {cluster.nodes} node(s): --sleep {d.sleep:g} lets {3600 / d.sleep:.0f} downloads an hour start, above the "
        f"{allowed:.0f} the site allows {cluster.nodes} address(es); it refuses the rest: use --sleep {least:g} or more"
    )


def inputs(costs: Costs, col: Collection) -> list[str]:
    """The unit costs behind the table, one line each."""
    w = work(costs, col.seconds, col)
    c, g = costs.cpu, costs.gpu
    per_clip = sum(1 / g.clips_per_s(k) for k in g.backbones)
    return [
        f"- mean trailer: {col.seconds:.1f} s, {col.seconds * col.fps:.0f} frames, "
        f"{col.seconds * col.clips_per_second:.0f} Shot-24 clips",
        f"- download: {w.raw / 1e6:.0f} MB ({costs.download.source_mbit} Mbit/s source, assumed), "
        f"{w.download_s:.1f} s per stream",
        f"- normalize: {c.normalize_cpu_per_second} CPU s per video second (measured) = {w.normalize_cpu:.1f} CPU s; "
        f"output {w.video / 1e6:.1f} MB",
        f"- decode: {c.decode_ms + c.shots_ms:.2f} CPU ms per frame (measured) = {w.decode_cpu:.1f} CPU s",
        f"- GPU (estimated): TransNet V2 {g.transnet_windows_per_s * g.speed:.0f} windows/s; backbones "
        + ", ".join(f"{k} {g.clips_per_s(k):,.0f}" for k in g.backbones)
        + f" clips/s ({1 / per_clip:,.0f} clips/s for all); {w.gpu_s:.3f} GPU s per trailer",
        f"- stores: {w.features / 1e6:.2f} MB per trailer; copies to the GPU {w.h2d_s:.3f} s per trailer",
    ]


def storage(col: Collection, costs: Costs) -> str:
    w = work(costs, col.seconds, col)
    videos, feats = col.trailers * w.video / 1e12, col.trailers * w.features / 1e12
    return f"- shared storage for {col.trailers:,} trailers: {videos:.2f} TB of videos + {feats:.2f} TB of stores"


# flag: (part of Costs, field, help); each overrides one unit cost
OVERRIDES = {
    "source-mbit": ("download", "source_mbit", "bitrate of the downloaded videos"),
    "stream-mbit": ("download", "stream_mbit", "speed of one download"),
    "sleep": ("download", "sleep", "fetch --sleep: seconds between download starts, one clock for the cluster"),
    "sleep-requests": ("download", "sleep_requests", "fetch --sleep-requests"),
    "workers": ("download", "workers", "fetch --workers: downloads at once, over the cluster"),
    "site-per-hour": ("download", "site_per_hour", "videos an hour the site allows one address (0: no limit)"),
    "normalize-cpu": ("cpu", "normalize_cpu_per_second", "CPU seconds to normalize one second of video"),
    "normalized-kbit": ("cpu", "normalized_kbit", "bitrate of the normalized videos"),
    "decode-ms": ("cpu", "decode_ms", "CPU ms to decode one 360p frame for the backbones"),
    "shots-ms": ("cpu", "shots_ms", "CPU ms per frame for TransNet V2's 48x27 frames"),
    "transnet-wps": ("gpu", "transnet_windows_per_s", "TransNet V2 windows per second on one GPU"),
    "backbone-tmacs": ("gpu", "backbone_tmacs", "sustained TMACs/s of the backbones on one GPU"),
    "gpu-speed": ("gpu", "speed", "factor on both GPU figures"),
    "h2d-gbs": ("gpu", "h2d_gb_per_s", "GB/s of frames copied to the GPU"),
}


def build_costs(args: argparse.Namespace) -> tuple[Costs, dict]:
    """The default costs with the command line's overrides, and the download overrides apart (they
    go over each scenario's download settings)."""
    given: dict[str, dict] = {"download": {}, "cpu": {}, "gpu": {}}
    for flag, (part, name, _) in OVERRIDES.items():
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            given[part][name] = int(value) if name == "workers" else value
    costs = Costs(
        download=replace(DownloadCosts(), **given["download"]),
        cpu=replace(CpuCosts(), **given["cpu"]),
        gpu=replace(GpuCosts(), **given["gpu"], **({"backbones": tuple(args.backbones)} if args.backbones else {})),
    )
    return costs, given["download"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trailers", type=int, nargs="+", default=[12_000, 100_000])
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--cores-per-node", type=int, default=16)
    p.add_argument("--net-gbit", type=float, default=10.0, help="each node's link")
    p.add_argument("--queue", type=int, default=RunConfig().queue, help="t12k run --queue")
    p.add_argument("--group", type=int, default=RunConfig().group, help="t12k run --group")
    p.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    p.add_argument(
        "--split",
        choices=("balanced", "t12k"),
        default="balanced",
        help="a node's cores: balanced between normalizing and decoding, or t12k's automatic split",
    )
    p.add_argument("--seconds-per-trailer", type=float, default=Collection.seconds)
    p.add_argument("--no-sim", action="store_true", help="skip the event simulation")
    for flag, (_, _, help_) in OVERRIDES.items():
        p.add_argument(f"--{flag}", type=float, default=None, help=help_)
    p.add_argument("--backbones", nargs="+", choices=list(BACKBONES), default=None)
    return p


def main(argv: list[str] | None = None) -> str:
    args = parser().parse_args(argv)
    costs, overrides = build_costs(args)
    base = Collection(seconds=args.seconds_per_trailer)
    lines = ["Inputs (per trailer):", *inputs(costs, base), "", HEADER, "|" + "---|" * 11]
    notes: list[str] = []
    for name in args.scenario:
        for trailers in args.trailers:
            col = replace(base, trailers=trailers)
            for nodes in args.nodes:
                cluster = Cluster(nodes, args.cores_per_node, args.net_gbit, args.queue, args.group, split=args.split)
                download = replace(scenario(name, nodes, DownloadCosts()), **overrides)
                run_costs = replace(costs, download=download)
                lines.append(row(name, col, run_costs, cluster, not args.no_sim))
                note = pacing_note(run_costs, cluster)
                if note and note not in notes:
                    notes.append(note)
    lines += ["", *(storage(replace(base, trailers=t), costs) for t in args.trailers), *notes]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
