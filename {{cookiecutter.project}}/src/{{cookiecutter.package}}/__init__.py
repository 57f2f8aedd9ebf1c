"""{{ cookiecutter.project }}: a LightGBM model, from pull request to production."""

__version__ = "0.1.0"
