"""What people and machines read: summaries, Markdown, JUnit XML, HTML pages and plots."""
