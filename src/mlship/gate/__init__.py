"""The gate's judgement: criteria over metrics, paired statistics against the champion."""
