"""Safe change-set deploys of the rendered templates: `adkit bootstrap|pipeline|deploy|plan|status|secrets|destroy`."""
