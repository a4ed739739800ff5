"""Code shared by gpuhub's services — the GPU allocator (``gpu_allocator``) and the
vfolder service (``vfolder_manager``) — so that neither imports the other:
the service application base (:mod:`gpuhub.service`), the JSON + HubAuth request
handler (:mod:`gpuhub.api`), the HTTP client base (:mod:`gpuhub.client`), bounded
number parsing (:mod:`gpuhub.numbers`) and the restart supervisor
(:mod:`gpuhub.supervise`)."""
