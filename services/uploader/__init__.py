"""uploader: staged files and reports → artifact store (local directory or S3) → ArtifactStored."""
