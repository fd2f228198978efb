"""Disaster-recovery commands (`adkit restore`); procedures in docs/disaster-recovery.md."""
