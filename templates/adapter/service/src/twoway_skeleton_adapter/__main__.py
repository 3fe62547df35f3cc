from __future__ import annotations

from twoway_skeleton_adapter.adapter import SkeletonSettings, adapter


def main() -> None:
    adapter.main(SkeletonSettings())


if __name__ == "__main__":
    main()
