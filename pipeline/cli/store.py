"""Versioning commands: show, log, tag, diff, reset, verify (thin wrappers over stores.repo.FrameStore and
stores.verify)."""
from __future__ import annotations

import sys

import click

from pipeline.cli.util import REF, STORE, NameType, echo_json, user_errors


@click.command()
@click.argument("store", type=STORE)
@click.option("--ref", type=REF, default=None, help="Branch, tag or snapshot id (default: main).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def show(store, ref, as_json):
    """Frames per split, annotation coverage, pseudo-label sets and size of a store.

    \b
    Example:
      mtdistill show data.ice --ref train/run1
    """
    from stores.repo import FrameStore
    from rich.filesize import decimal as human_bytes

    from stores.schema import TOPK_ARRAYS
    from stores.summary import summarize

    info = summarize(FrameStore.open(store, ref))
    if as_json:
        return echo_json(info)
    h, w = info["frame_size"]
    click.echo(f"{info['path']}  {info['name']!r}  at {info['ref']} ({info['snapshot']})")
    click.echo(f"frames: {info['frames']} of {w}x{h}, {info['classes']} classes, "
               f"{human_bytes(info['size_bytes'])} on disk")
    click.echo(f"{'split':<10} {'frames':>7} {'segm %':>7} {'depth %':>8}")
    for name, s in info["splits"].items():
        click.echo(f"{name:<10} {s['frames']:>7} {s['segm_pct']:>7.1f} {s['depth_pct']:>8.1f}")
    a = info["annotations"]
    click.echo(f"{'all':<10} {info['frames']:>7} {a['segm_pct']:>7.1f} {a['depth_pct']:>8.1f}")
    if info["pseudo"]:
        click.echo("pseudo-label sets:")
        for name, p in info["pseudo"].items():
            teachers = ", ".join(f"{t}={v.get('name', '?')}" for t, v in p["teachers"].items()) or "-"
            stored = p["bytes_stored"]
            soft = sum(stored.get(k, 0) for k in TOPK_ARRAYS)
            per_frame = (f", {human_bytes(sum(stored.values()) / p['frames'])}/frame stored"
                         + (f" (top-{p['topk']} soft targets {human_bytes(soft / p['frames'])})" if soft else "")
                         if p["frames"] else "")
            click.echo(f"  {name}: {p['labeled_frames']}/{p['frames']} frames labeled "
                       f"(shards {p['shards_done']}), teachers: {teachers}{per_frame}")
    else:
        click.echo("pseudo-label sets: none")
    if info["tags"]:
        click.echo("tags: " + ", ".join(info["tags"]))


@click.command()
@click.argument("store", type=STORE)
@click.option("--ref", type=REF, default="main", show_default=True, help="Branch, tag or snapshot to start from.")
@click.option("-n", "--limit", type=click.IntRange(1, 10**9), default=None, help="Show at most N versions.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def log(store, ref, limit, as_json):
    """Versions of a store, newest first, with what made each one.

    \b
    Example:
      mtdistill log data.ice -n 5
    """
    from stores.repo import FrameStore

    s = FrameStore.open(store, ref)
    entries = s.log(limit=limit)
    if as_json:
        return echo_json(entries)
    tags_at = {}
    for t, sid in s.tags().items():
        tags_at.setdefault(sid, []).append(t)
    for e in entries:
        md = e["metadata"]
        tags = f"  [{', '.join(tags_at[e['id']])}]" if e["id"] in tags_at else ""
        click.echo(f"{e['id']}  {e['written_at'][:19].replace('T', ' ')}  {e['message']}{tags}")
        extra = {k: md[k] for k in ("frames_added", "duplicates", "command") if k in md}
        if md.get("skipped"):
            extra["skipped"] = len(md["skipped"])
        if extra:
            click.echo("    " + "  ".join(f"{k}={v}" for k, v in extra.items()))


@click.command()
@click.argument("store", type=STORE)
@click.argument("name", type=NameType())
@click.option("--ref", type=REF, default="main", show_default=True, help="Branch, tag or snapshot to tag.")
@user_errors
def tag(store, name, ref):
    """Name a store version so runs can refer to it.

    \b
    Example:
      mtdistill tag data.ice before-relabel
    """
    from stores.repo import FrameStore

    sid = FrameStore.open(store).tag(name, ref)
    click.echo(f"tagged {sid} as {name}")


@click.command()
@click.argument("store", type=STORE)
@click.argument("from_ref", type=REF)
@click.argument("to_ref", type=REF, default="main")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def diff(store, from_ref, to_ref, as_json):
    """What changed between two versions (frames, pseudo-label sets, arrays).

    \b
    Example:
      mtdistill diff data.ice before-relabel main
    """
    from stores.repo import FrameStore

    d = FrameStore.open(store).diff(from_ref, to_ref)
    if as_json:
        return echo_json(d)
    click.echo(f"{from_ref} ({d['from']}) -> {to_ref} ({d['to']})")
    f = d["frames"]
    click.echo(f"frames: {f['from']} -> {f['to']} ({f['to'] - f['from']:+d})")
    for kind in ("added", "removed"):
        if d["pseudo_sets"][kind]:
            click.echo(f"pseudo-label sets {kind}: {', '.join(d['pseudo_sets'][kind])}")
    for path, n in d["updated_chunks"].items():
        click.echo(f"  {path}: {n} shard(s)/chunk(s) written")
    if d["deleted_arrays"]:
        click.echo("deleted: " + ", ".join(d["deleted_arrays"]))


@click.command()
@click.argument("store", type=STORE)
@click.argument("ref", type=REF)
@click.option("--branch", type=REF, default="main", show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@user_errors
def reset(store, ref, branch, yes):
    """Move a branch back to an earlier version (later versions stay reachable by id or tag).

    \b
    Example:
      mtdistill reset data.ice before-relabel --yes
    """
    from stores.repo import FrameStore

    s = FrameStore.open(store, branch)
    target = s.resolve(ref)
    if not yes:
        click.confirm(f"reset {branch} from {s.snapshot_id} to {target}?", abort=True)
    old, new = s.reset(branch, ref)
    click.echo(f"{branch}: {old} -> {new} (the old tip stays reachable as {old})")


@click.command()
@click.argument("store", type=STORE)
@click.option("--ref", type=REF, default="main", show_default=True, help="Branch, tag or snapshot id to check.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@user_errors
def verify(store, ref, as_json):
    """Read and check every chunk of a store version (crc32c checksums, and each frame's content key).

    Exit 0: every chunk is intact; 1: damage found (each damaged array and frame is named);
    2: the store was written without checksums (made before they existed), so silent damage cannot be
    ruled out: frames/rgb is still checked against its content keys and undecodable chunks are found.

    \b
    Example:
      mtdistill verify data.ice --ref train/run1
    """
    from stores.repo import FrameStore
    from stores.verify import describe, verify as verify_store

    report = verify_store(FrameStore.open(store, ref))
    if as_json:
        echo_json(report)
    else:
        frames = report["arrays"].get("frames/rgb", {}).get("frames", 0)
        click.echo(f"{store} at {ref} ({report['snapshot']}): read {len(report['arrays'])} arrays of "
                   f"{frames} frames")
    for d in report["damaged"]:
        click.echo(f"error: {describe(store, d['array'], *d['frames'], d['reason'])}", err=True)
    if report["damaged"]:
        sys.exit(1)
    if report["unverifiable"]:
        names = report["unverifiable"]
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        click.echo(f"{store}: cannot be verified: {len(names)} array(s) were written without checksums "
                   f"({shown}); frames/rgb matches its content keys and every chunk decodes", err=True)
        sys.exit(2)
    if not as_json:
        click.echo("every chunk is intact (checksums match)")
