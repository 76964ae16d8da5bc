"""The app's pages, each a typed function; `explorer/ui/nav.py` says their titles, icons and addresses."""

from pages import Architecture, Classroom, Compare, Gradients, Lab, Learn

PAGES = {"learn": Learn.page, "lab": Lab.page, "architecture": Architecture.page, "compare": Compare.page,
         "gradients": Gradients.page, "classroom": Classroom.page}
