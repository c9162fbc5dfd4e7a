"""After deployment: profiles of the data, drift statistics, the sink of sampled rows."""
