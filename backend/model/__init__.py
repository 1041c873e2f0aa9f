"""Domain layer: model folders, pipelines, device workers, image encoding. No Flask here."""
