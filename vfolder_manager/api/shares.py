"""Sharing: a vfolder's shares (``vfolders/{id}/shares``: share with a user or a
group, ro or rw, or take a share back) and the invitations they make (a user
share is pending until its user accepts it: ``invitations``)."""

from __future__ import annotations

from ..core.permissions import Action
from .base import VID, Base


class SharesHandler(Base):
    async def post(self, vid):
        body = self.body()
        caller = self.caller

        def share(db):
            vf, _ = self.manager.get(db, vid, caller, Action.MANAGE)
            return self.manager.share_json(self.manager.share(db, vf, caller, body))

        self.send(await self.transact(share), 201)

    async def delete(self, vid):
        body = self.body() if self.request.body else {
            k: self.get_argument(k) for k in ("user", "group") if self.get_argument(k, None) is not None
        }
        caller = self.caller

        def unshare(db):
            vf, _ = self.manager.get(db, vid, caller, Action.MANAGE)
            self.manager.unshare(db, vf, body)

        await self.transact(unshare)
        self.no_content()


class InvitationsHandler(Base):
    async def get(self):
        caller = self.caller
        self.send({"invitations": await self.transact(self.manager.invitations, caller)})


class InvitationAnswerHandler(Base):
    async def post(self, sid, answer):
        caller = self.caller

        def answer_it(db):
            return self.manager.invitation_json(self.manager.answer(db, caller, sid, answer == "accept"))

        self.send(await self.transact(answer_it))


default_handlers = [
    (rf"/vfolders/{VID}/shares", SharesHandler),
    (r"/invitations", InvitationsHandler),
    (r"/invitations/([^/]+)/(accept|reject)", InvitationAnswerHandler),
]
