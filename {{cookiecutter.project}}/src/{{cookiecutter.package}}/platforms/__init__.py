"""Platform sync: environments/*.yaml applied to GitHub and GitLab settings, and checked."""
