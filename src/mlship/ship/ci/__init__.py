"""The CI systems: GitHub Actions, Jenkins, Cloud Build (approvals, comments, builds)."""
