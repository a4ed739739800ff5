PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE meta (
	"key" VARCHAR(64) NOT NULL, 
	value VARCHAR(255) NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO meta VALUES('units_per_gpu','20');
CREATE TABLE hosts (
	name VARCHAR(255) NOT NULL, 
	cpus FLOAT NOT NULL, 
	memory_mb INTEGER NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	source VARCHAR(16) NOT NULL, 
	drained BOOLEAN, 
	last_heartbeat FLOAT, 
	docker JSON, 
	usage JSON, 
	unknown JSON, 
	details JSON, 
	PRIMARY KEY (name)
);
INSERT INTO hosts VALUES('node-a',32.0,262144,'up','inventory',0,NULL,NULL,NULL,NULL,NULL);
INSERT INTO hosts VALUES('node-b',16.0,131072,'up','inventory',0,NULL,NULL,NULL,NULL,NULL);
CREATE TABLE allocations (
	id VARCHAR(32) NOT NULL, 
	user VARCHAR(255) NOT NULL, 
	server VARCHAR(255) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	units INTEGER NOT NULL, 
	cpu FLOAT NOT NULL, 
	mem_mb INTEGER NOT NULL, 
	max_hours FLOAT NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	created_at FLOAT NOT NULL, 
	released_at FLOAT, 
	PRIMARY KEY (id)
);
INSERT INTO allocations VALUES('017c568ebc7b6f3e','alice','alice','node-a',10,2.0,4096,4.0,'granted',1796033477.9013543128,NULL);
INSERT INTO allocations VALUES('5c6f6646aa64c776','bob','bob:big','node-a',40,4.0,8192,8.0,'granted',1796033477.9070262909,NULL);
INSERT INTO allocations VALUES('716b485da7554551','carol','carol','node-a',20,1.0,1024,1.0,'released',1796033477.9119145869,1796033477.9142673015);
CREATE TABLE devices (
	uuid VARCHAR(128) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	"index" INTEGER NOT NULL, 
	model VARCHAR(255) NOT NULL, 
	memory_mb INTEGER NOT NULL, 
	island VARCHAR(64) NOT NULL, 
	PRIMARY KEY (uuid), 
	FOREIGN KEY(host) REFERENCES hosts (name) ON DELETE CASCADE
);
INSERT INTO devices VALUES('GPU-a0','node-a',0,'A100-SXM4-80GB',81920,'nvswitch0');
INSERT INTO devices VALUES('GPU-a1','node-a',1,'A100-SXM4-80GB',81920,'nvswitch0');
INSERT INTO devices VALUES('GPU-a2','node-a',2,'A100-SXM4-80GB',81920,'nvswitch0');
INSERT INTO devices VALUES('GPU-a3','node-a',3,'A100-SXM4-80GB',81920,'nvswitch0');
INSERT INTO devices VALUES('GPU-b0','node-b',0,'L4',24576,'');
INSERT INTO devices VALUES('GPU-b1','node-b',1,'L4',24576,'');
CREATE TABLE shares (
	id INTEGER NOT NULL, 
	allocation_id VARCHAR(32) NOT NULL, 
	device_uuid VARCHAR(128) NOT NULL, 
	units INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(allocation_id) REFERENCES allocations (id) ON DELETE CASCADE
);
INSERT INTO shares VALUES(1,'017c568ebc7b6f3e','GPU-a0',10);
INSERT INTO shares VALUES(2,'5c6f6646aa64c776','GPU-a1',20);
INSERT INTO shares VALUES(3,'5c6f6646aa64c776','GPU-a2',20);
INSERT INTO shares VALUES(4,'716b485da7554551','GPU-a3',20);
CREATE INDEX ix_allocations_state ON allocations (state);
CREATE INDEX ix_allocations_user ON allocations (user);
CREATE INDEX ix_devices_host ON devices (host);
CREATE INDEX ix_shares_allocation_id ON shares (allocation_id);
CREATE INDEX ix_shares_device_uuid ON shares (device_uuid);
COMMIT;
