"""`python -m lorastudio …` behaves exactly like the `lorastudio` console script."""

from lorastudio.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
