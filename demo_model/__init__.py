"""A tiny text-to-image model that draws coloured shapes, trained offline on the CPU from scenes
it renders itself (issue 15, in progress: see docs/development.md, "The trained demo")."""
